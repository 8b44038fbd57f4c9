"""The plans every installation starts with (staff edit them in the admin afterwards)."""

from __future__ import annotations

from typing import Any

# slug, name, rank, price (cents), credits/month, lane, relax, private, concurrent, pending, API rate/min
DEFAULT_PLANS = [
    ("free", "Free", 0, 0, 25, "free", False, False, 1, 2, 20),
    ("basic", "Basic", 1, 1000, 200, "standard", False, False, 2, 5, 60),
    ("standard", "Standard", 2, 3000, 900, "standard", True, True, 3, 10, 120),
    ("pro", "Pro", 3, 6000, 2000, "priority", True, True, 6, 20, 300),
]


def seed_plans(plan_model: Any) -> None:
    """Create the default plans that are missing; existing ones keep their edits."""
    for slug, name, rank, price, credits, lane, relax, private, concurrent, pending, rate in DEFAULT_PLANS:
        plan_model.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "rank": rank,
                "price_cents": price,
                "monthly_credits": credits,
                "lane": lane,
                "relax_allowed": relax,
                "private_allowed": private,
                "max_concurrent": concurrent,
                "max_pending": pending,
                "api_rate_per_minute": rate,
                "stripe_price_id": "" if slug == "free" else f"price_atelier_{slug}",
            },
        )
