"""Pricing: the rates of a model at an instant, the cost of a call, and the overrides file.

``catalog`` resolves rates (bundled genai-prices catalog, built-in ``corrections``, the ``overrides`` file),
``rates`` is what a price is, ``cost`` is the arithmetic of one call's cost.
"""

from llmmeter_collector.pricing.catalog import PriceCatalog
from llmmeter_collector.pricing.corrections import CATALOG_CORRECTIONS
from llmmeter_collector.pricing.overrides import PriceError, check_price_file
from llmmeter_collector.pricing.rates import LongContextTier, Rates, TokenRates

__all__ = [
    "CATALOG_CORRECTIONS",
    "LongContextTier",
    "PriceCatalog",
    "PriceError",
    "Rates",
    "TokenRates",
    "check_price_file",
]
