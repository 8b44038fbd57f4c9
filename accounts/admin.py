from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApiKey, User

admin.site.register(User, UserAdmin)
# The admin signs in through our sign-in page, with its lockout and second factor
# (accounts/staff_mfa.py), never through a password-only form of its own.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "name"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at"]
