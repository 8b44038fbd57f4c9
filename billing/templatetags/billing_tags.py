from django import template

from billing.credits import format_credits

register = template.Library()


@register.filter
def credits(hundredths: int) -> str:
    return format_credits(int(hundredths or 0))


@register.filter
def dollars(cents: int) -> str:
    return f"${cents / 100:.0f}" if cents % 100 == 0 else f"${cents / 100:.2f}"
