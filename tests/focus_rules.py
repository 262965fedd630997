"""The FOCUS 1.2 rules the export relies on, encoded for the tests (the FinOps Foundation's focus-validator on PyPI,
1.0.0, checks FOCUS 1.0 only). Each check cites its section of the specification (FOCUS_Spec tag v1.2,
specification/columns/*.md and specification/attributes/*.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation

MANDATORY = (  # every column whose "Feature level" is Mandatory in 1.2
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodEnd",
    "ChargePeriodStart", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity",
    "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
)  # fmt: skip
NULLABLE_MANDATORY = {"ChargeClass"}  # chargeclass.md: null unless the row corrects an invoiced period
NOT_NULL = set(MANDATORY) - NULLABLE_MANDATORY - {"PricingQuantity", "PricingUnit"}
DECIMALS = (
    "BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity", "ConsumedQuantity",
    "ContractedUnitPrice", "ListUnitPrice",
)  # fmt: skip
DATETIMES = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
CHARGE_CATEGORIES = {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}  # chargecategory.md
SERVICE_CATEGORIES = {  # servicecategory.md
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
    "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media",
    "Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other",
}  # fmt: skip
PRICING_CATEGORIES = {"Standard", "Dynamic", "Committed", "Other"}  # pricingcategory.md
CHARGE_FREQUENCIES = {"One-Time", "Recurring", "Usage-Based"}  # chargefrequency.md
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")  # datetime_format.md: 'YYYY-MM-DDTHH:mm:ssZ'
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")  # numeric_format.md: no exponent, no thousands separator, no symbol
_COLUMN = re.compile(r"^(x_[A-Za-z0-9]+|[A-Z][A-Za-z0-9]*)$")  # column_handling.md: PascalCase, custom x_ prefix
_PASCAL_OR_CUSTOM = re.compile(r"^(x_\w+|[A-Z][A-Za-z0-9]*)$")  # skupricedetails.md: property keys


def violations(columns: Iterable[str], rows: Iterable[Mapping[str, str | None]]) -> list[str]:
    """Every broken rule, as 'row N, Column: rule (section)'. '' and None are null."""
    out = []
    columns = list(columns)
    for name in MANDATORY:
        if name not in columns:
            out.append(f"{name}: a Mandatory column is missing (columns/{name.lower()}.md)")
    for name in columns:
        if not _COLUMN.match(name) or len(name) > 50:
            out.append(f"{name}: not PascalCase / x_ custom, or longer than 50 (attributes/column_handling.md)")
    for n, row in enumerate(rows, start=1):

        def null(column: str, row: Mapping[str, str | None] = row) -> bool:
            return row.get(column) in (None, "")

        for name in NOT_NULL:
            if null(name):
                out.append(f"row {n}, {name}: MUST NOT be null (columns/{name.lower()}.md)")
        for name in DECIMALS:
            value = row.get(name)
            if value not in (None, ""):
                try:
                    Decimal(str(value))
                except InvalidOperation:
                    out.append(f"row {n}, {name}: not a decimal (attributes/numeric_format.md)")
                if not _NUMBER.match(str(value)):
                    out.append(f"row {n}, {name}: {value!r} breaks NumericFormat (attributes/numeric_format.md)")
        moments = {}
        for name in DATETIMES:
            value = str(row.get(name) or "")
            if not _DATETIME.match(value):
                out.append(f"row {n}, {name}: {value!r} is not YYYY-MM-DDTHH:mm:ssZ (attributes/datetime_format.md)")
            else:
                moments[name] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if len(moments) == 4:
            if not moments["ChargePeriodStart"] < moments["ChargePeriodEnd"]:
                out.append(f"row {n}: ChargePeriodStart must be before ChargePeriodEnd (columns/chargeperiodend.md)")
            if not moments["BillingPeriodStart"] <= moments["ChargePeriodStart"] < moments["BillingPeriodEnd"]:
                out.append(
                    f"row {n}: the charge period lies outside the billing period (columns/billingperiodstart.md)"
                )
        currency = str(row.get("BillingCurrency") or "")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            out.append(f"row {n}, BillingCurrency: not ISO 4217 (attributes/currency_format.md)")
        if row.get("ChargeCategory") not in CHARGE_CATEGORIES:
            out.append(f"row {n}, ChargeCategory: {row.get('ChargeCategory')!r} (columns/chargecategory.md)")
        if not null("ChargeClass") and row.get("ChargeClass") != "Correction":
            out.append(f"row {n}, ChargeClass: must be null or Correction (columns/chargeclass.md)")
        if row.get("ServiceCategory") not in SERVICE_CATEGORIES:
            out.append(f"row {n}, ServiceCategory: {row.get('ServiceCategory')!r} (columns/servicecategory.md)")
        if not null("PricingCategory") and row.get("PricingCategory") not in PRICING_CATEGORIES:
            out.append(f"row {n}, PricingCategory: {row.get('PricingCategory')!r} (columns/pricingcategory.md)")
        if not null("ChargeFrequency") and row.get("ChargeFrequency") not in CHARGE_FREQUENCIES:
            out.append(f"row {n}, ChargeFrequency: {row.get('ChargeFrequency')!r} (columns/chargefrequency.md)")
        if null("PricingQuantity") != null("PricingUnit"):
            out.append(f"row {n}: PricingUnit is null exactly when PricingQuantity is (columns/pricingunit.md)")
        if row.get("ChargeCategory") == "Usage":
            if null("ConsumedQuantity") or null("ConsumedUnit"):
                out.append(
                    f"row {n}: a Usage row needs ConsumedQuantity and ConsumedUnit (columns/consumedquantity.md)"
                )
            if null("SkuPriceId") or null("SkuId"):
                out.append(f"row {n}: a Usage row needs SkuId and SkuPriceId (columns/skupriceid.md)")
        if null("SkuPriceId") and not null("SkuPriceDetails"):
            out.append(f"row {n}: SkuPriceDetails must be null when SkuPriceId is (columns/skupricedetails.md)")
        for name in ("SkuPriceDetails", "Tags"):
            if not null(name):
                try:
                    value = json.loads(str(row[name]))
                except ValueError:
                    value = None
                if not isinstance(value, dict):
                    out.append(f"row {n}, {name}: not a JSON object (attributes/key_value_format.md)")
                elif name == "SkuPriceDetails":
                    bad = [k for k in value if not _PASCAL_OR_CUSTOM.match(k)]
                    if bad:
                        out.append(f"row {n}, SkuPriceDetails: keys {bad} need x_ (columns/skupricedetails.md)")
    return out
