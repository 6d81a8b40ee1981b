"""The one money scale: every amount is a Decimal with 4 decimal places and at most 14 digits.

Models, serializers, admin forms, estimates and input validation all take the scale from
here, so an amount that fits one of them fits all of them.
"""

from decimal import Decimal

MONEY_DIGITS = 14
MONEY_PLACES = 4
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)  # 0.0001
MONEY = {"max_digits": MONEY_DIGITS, "decimal_places": MONEY_PLACES}  # field keyword arguments
MAX_MONEY = Decimal("1000000000")  # a billion: anything above is a typo, not a budget


def money(amount: Decimal) -> Decimal:
    """`amount` at the money scale."""
    return amount.quantize(MONEY_QUANTUM)
