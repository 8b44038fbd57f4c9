"""Closing an account and, after the grace period, purging it (issue 18, "Leaving").

Closing (``account_close``): the subscription ends at Stripe first (when Stripe cannot be asked,
nothing changes and the member may try again); then the member is deactivated, so sign-in, API
keys, OAuth tokens and sessions stop at once, their open sockets are told to close, their waiting
and running generations are canceled (held credits released), and a confirmation mail carries a
restore link valid for ATELIER_ACCOUNT_DELETION_GRACE_DAYS.

Within those days the member changes their mind through that link, not by signing in: a closed
account cannot sign in (its keys and tokens must not work meanwhile either), and a link sent to the
account's address is what people know from other services. Restoring brings back the account as it
was, less the subscription (canceled; they subscribe again) and the canceled generations.

Purging (``purge_due_accounts``, a dispatcher duty run beside its loop, generations/leaving_chores.py):
images (originals and thumbnails, files or S3 objects through the storage layer, unless another
image or upload still uses the same content-addressed file), uploads, generations, webhooks, API
keys, OAuth tokens, addresses, second factors and the apps' own registered steps (the gallery's
likes, reports and profile). The user row stays as an anonymous placeholder (a random name, no
address, no password), so the credit ledger keeps every amount and names nobody.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.closing import (
    account_deactivate,
    account_reactivate,
    closure_for_token,
    identity_erase,
    restore_token,
)
from accounts.models import AccountClosure, DataExport, User
from billing.leaving import customer_forget, subscription_end_now
from core.errors import ApiError
from generations.extensions import purge_steps
from generations.models import ACTIVE_STATUSES, Generation, Image, Upload
from generations.publisher import shared_publisher, user_group
from generations.retention import named
from generations.services import cancel_generation
from generations.storage import delete_content, image_files
from webhooks.models import WebhookEndpoint

log = logging.getLogger(__name__)

ACCOUNT_CLOSED = {"type": "account.closed"}  # the consumers close their socket on it


def grace() -> timedelta:
    return timedelta(days=settings.ATELIER_ACCOUNT_DELETION_GRACE_DAYS)


def account_close(*, user: User, site: str) -> AccountClosure:
    """Close ``user``'s account now (see the module's docstring); ``site`` (scheme and host) is
    where the restore link of the confirmation mail leads. Raises billing.leaving.StripeError when
    the subscription could not be canceled: then nothing else has changed."""
    subscription_end_now(user=user)
    now = timezone.now()
    with transaction.atomic():
        account_deactivate(user=user)
        closure, _ = AccountClosure.objects.update_or_create(
            user=user, defaults={"requested_at": now, "purge_after": now + grace(), "purged_at": None}
        )
    for generation in list(Generation.objects.filter(user=user, status__in=ACTIVE_STATUSES)):
        with contextlib.suppress(ApiError):  # it finished meanwhile
            cancel_generation(generation=generation)
    shared_publisher().send_to_group(user_group(user.pk), ACCOUNT_CLOSED)
    if user.email:
        link = site + reverse("account_restore", args=[restore_token(closure)])
        context = {"user": user, "link": link, "purge_after": closure.purge_after}
        try:
            send_mail(
                f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Your account is closed",
                render_to_string("leaving/closed_mail.txt", context),
                None,
                [user.email],
            )
        except (smtplib.SMTPException, OSError) as exc:  # it is closed all the same
            log.warning("could not mail the closing to %s: %s", user.email, exc)
    return closure


def account_restore(*, token: str) -> User | None:
    """Reopen the account a restore link names, within the grace period; None for a link that is
    forged, too old, of an earlier closure, or of an account already purged."""
    closure = closure_for_token(token, max_age=grace())
    if closure is None:
        return None
    with transaction.atomic():
        user = closure.user
        account_reactivate(user=user)
        closure.delete()
    return user


def purge_due_accounts(limit: int = 5) -> int:
    """Purge the closed accounts whose grace period is over; how many were purged."""
    due = AccountClosure.objects.filter(purged_at__isnull=True, purge_after__lte=timezone.now())
    purged = 0
    for closure in due.select_related("user").order_by("purge_after")[:limit]:
        purged += account_purge(closure)
    return purged


def account_purge(closure: AccountClosure) -> bool:
    """Remove what the member made and who they were; False while a job of theirs is still
    stopping (a running one ends at its next step; the next round purges)."""
    user = closure.user
    if Generation.objects.filter(user=user, status__in=ACTIVE_STATUSES).exists():
        return False
    # Deleted images not yet purged too, with every thumbnail width (retention.named decides below).
    paths = {path for image in Image.all_objects.filter(generation__user=user) for path in image_files(image)}
    paths |= set(Upload.objects.filter(user=user).values_list("file", flat=True))
    exports = set(DataExport.objects.filter(user=user).exclude(file="").values_list("file", flat=True))
    with transaction.atomic():
        for forget in purge_steps():
            forget(user=user)
        # Another member's remix of a published image used it as its input: that input goes too.
        others = Generation.objects.exclude(user=user)
        others.filter(input_upload__user=user).update(input_upload=None)
        others.filter(mask_upload__user=user).update(mask_upload=None)
        Generation.objects.filter(user=user).delete()  # its images; the ledger's entries are kept
        Upload.objects.filter(user=user).delete()
        WebhookEndpoint.objects.filter(user=user).delete()
        customer_forget(user=user)
        identity_erase(user=user)
        AccountClosure.objects.filter(pk=closure.pk).update(purged_at=timezone.now())
    for path in sorted(paths - named(paths)) + sorted(exports):
        try:
            delete_content(path)
        except OSError as exc:  # a file the store would not delete now: logged, not retried
            log.warning("could not delete %s of a purged account: %s", path, exc)
    return True
