"""What a returned line needs in the customer's parcel: packing advice for sterile,
cold-chain and sharp items. One home for the approved email and the status page, so both
tell the customer the same thing about the same line. Pure: no I/O.

A line is sterile or cold-chain when the request line says so or the shop flags its SKU
(`ShopPolicy.sku_flags`, as the rules read them). Sharps have no flag: a line is one when
its product name names one (lancets, needles, pen needles, syringes), in English or Chinese.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from refundbridge.core.policy import ShopPolicy

# Words in a product's name that mean a sharp, matched case-insensitively anywhere in it.
SHARP_WORDS: Final = ("lancet", "needle", "syringe", "sharps", "采血针", "针头", "注射器",
                      "针")


def is_sharp(name: str) -> bool:
    """Whether a product's name says it is a sharp."""
    folded = name.casefold()
    return any(word in folded for word in SHARP_WORDS)


@dataclass(frozen=True, slots=True)
class Packing:
    """How one line must be packed."""

    sterile: bool = False
    cold_chain: bool = False
    sharp: bool = False


def packing_of(*, sku: str, name: str, sterile: bool, cold_chain: bool,
               policy: ShopPolicy | None) -> Packing:
    """One line's needs: its own flags, its SKU's flags in the shop's policy, its name."""
    flags = policy.flags(sku) if policy is not None else None
    return Packing(
        sterile=sterile or bool(flags and flags.sterile),
        cold_chain=cold_chain or bool(flags and flags.cold_chain),
        sharp=is_sharp(name),
    )

