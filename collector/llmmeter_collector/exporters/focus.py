"""FOCUS: the ledger as a FinOps Open Cost and Usage Specification dataset, and cloud FOCUS exports read back.

Export: FOCUS 1.2 (the latest release ratified in the specification repository llmmeter was checked against,
FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec tag v1.2), one row per UTC day x provider x model x token class x project
(optionally x feature and/or user), every Mandatory column plus the Conditional ones a metered LLM bill has:
ConsumedQuantity / ConsumedUnit ("Tokens"), SkuId, SkuMeter, SkuPriceId, SkuPriceDetails, ListUnitPrice,
ContractedUnitPrice, PricingCategory, ChargeFrequency, SubAccountId / SubAccountName (the llmmeter project) and
Tags. The 1.3 provider columns and the AI model billing draft's SKU properties are not ratified in that release;
they travel as custom columns (``x_ServiceProviderName``, ``x_HostProviderName``, ``x_ModelId``, ``x_TokenClass``)
and ``x_``-prefixed SkuPriceDetails keys, as the 1.2 extensibility rules require. Costs are exact decimals.

Import: the AI-service rows of a cloud's FOCUS export (AWS, Azure, Google Cloud), validated whole before anything
is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

FOCUS_VERSION = "1.2"
_UNIT_PRICE_QUANTUM = Decimal("1e-18")  # unit prices are a division: rounded to 1e-18 USD (costs stay exact)
DECIMAL_COLUMNS = (
    "BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity", "ConsumedQuantity",
    "ContractedUnitPrice", "ListUnitPrice",
)  # fmt: skip
DATETIME_COLUMNS = ("BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart")
CATEGORY = "AI and Machine Learning"

COLUMNS = (
    # FOCUS 1.2 Mandatory
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodEnd",
    "ChargePeriodStart", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity",
    "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
    # FOCUS 1.2 Conditional / Recommended, applicable to metered LLM usage
    "ChargeFrequency", "ConsumedQuantity", "ConsumedUnit", "ContractedUnitPrice", "ListUnitPrice", "PricingCategory",
    "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId", "SubAccountId", "SubAccountName",
    "Tags",
    # custom columns (x_): the 1.3 provider names, the model and token class, llmmeter's own counts
    "x_ServiceProviderName", "x_HostProviderName", "x_ModelId", "x_TokenClass", "x_Calls", "x_Feature", "x_User",
)  # fmt: skip


@dataclass(frozen=True)
class _Vendor:
    provider: str  # ProviderName / InvoiceIssuerName / x_ServiceProviderName: who sells it
    host: str  # x_HostProviderName: whose infrastructure runs it
    service: str  # ServiceName


_VENDORS = {
    "openai": _Vendor("OpenAI", "OpenAI", "OpenAI API"),
    "anthropic": _Vendor("Anthropic", "Anthropic", "Claude API"),
    "gcp.gemini": _Vendor("Google", "Google Cloud", "Gemini API"),
    "gcp.vertex_ai": _Vendor("Google Cloud", "Google Cloud", "Vertex AI"),
    "aws.bedrock": _Vendor("Amazon Web Services", "Amazon Web Services", "Amazon Bedrock"),
    "azure.ai.openai": _Vendor("Microsoft", "Microsoft", "Azure OpenAI"),
    "azure.ai.inference": _Vendor("Microsoft", "Microsoft", "Azure AI Foundry"),
    "mistral_ai": _Vendor("Mistral AI", "Mistral AI", "Mistral API"),
    "deepseek": _Vendor("DeepSeek", "DeepSeek", "DeepSeek API"),
    "groq": _Vendor("Groq", "Groq", "GroqCloud"),
    "x_ai": _Vendor("xAI", "xAI", "xAI API"),
    "cohere": _Vendor("Cohere", "Cohere", "Cohere API"),
}
_PUBLISHERS = (
    ("gpt", "OpenAI"), ("o1", "OpenAI"), ("o3", "OpenAI"), ("o4", "OpenAI"), ("text-embedding", "OpenAI"),
    ("claude", "Anthropic"), ("anthropic.", "Anthropic"), ("gemini", "Google"), ("models/gemini", "Google"),
    ("meta.", "Meta"), ("llama", "Meta"), ("mistral", "Mistral AI"), ("amazon.", "Amazon Web Services"),
    ("cohere", "Cohere"), ("deepseek", "DeepSeek"), ("grok", "xAI"),
)  # fmt: skip

# token class -> (SkuMeter, token direction, cache action, pricing unit)
TOKEN_CLASSES = {
    "input": ("Input Tokens", "Input", "None", "Tokens"),
    "cache_read": ("Cached Input Tokens", "Input", "Read", "Tokens"),
    "cache_write": ("Cache Write Input Tokens", "Input", "Write", "Tokens"),
    "output": ("Output Tokens", "Output", "None", "Tokens"),
    "input_audio": ("Audio Input Tokens", "Input", "None", "Tokens"),
    "output_audio": ("Audio Output Tokens", "Output", "None", "Tokens"),
    "request": ("Requests", "None", "None", "Requests"),
}


def vendor(provider: str) -> _Vendor:
    found = _VENDORS.get(provider)
    if found is not None:
        return found
    name = provider.split(".")[-1].replace("_", " ").title() or "Unknown"
    return _Vendor(name, name, f"{name} API")


def publisher(model: str, provider: str) -> str:
    """Who made the model (PublisherName): a Claude model on Bedrock is published by Anthropic."""
    lowered = model.lower().split("/")[-1]
    for region in ("us.", "eu.", "apac.", "global."):  # Bedrock cross-region inference profiles
        lowered = lowered.removeprefix(region)
    for prefix, name in _PUBLISHERS:
        if lowered.startswith(prefix):
            return name
    return vendor(provider).provider


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, 1, tzinfo=timezone.utc)
    end = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def _number(value: Decimal) -> str:
    """A decimal in plain notation (FOCUS NumericFormat: no exponent), exact."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Usage:
    """One day x provider x model x project (x feature x user) of the ledger: quantity and cost per token class."""

    day: date
    provider: str
    model: str
    project: str
    feature: str | None
    user: str | None
    calls: int
    quantities: Mapping[str, int]  # token class -> tokens (request: calls)
    costs: Mapping[str, Decimal]  # token class -> USD


def rows(usages: Iterable[Usage]) -> Iterable[dict[str, str]]:
    """FOCUS rows (column -> text, '' = null) of the ledger's usage: one per token class with tokens or a cost."""
    for u in usages:
        v = vendor(u.provider)
        start = datetime(u.day.year, u.day.month, u.day.day, tzinfo=timezone.utc)
        period_start, period_end = _month(u.day)
        tags: dict[str, Any] = {"llmmeter.project": u.project} if u.project else {}
        if u.feature is not None:
            tags["llmmeter.feature"] = u.feature
        if u.user is not None:
            tags["user.id"] = u.user
        for token_class, (meter, direction, cache, unit) in TOKEN_CLASSES.items():
            quantity = u.quantities.get(token_class, 0)
            cost = u.costs.get(token_class, Decimal(0))
            if not quantity and not cost:
                continue
            sku = f"{u.provider}/{u.model}/{token_class}"
            unit_price = (cost / quantity).quantize(_UNIT_PRICE_QUANTUM) if quantity else Decimal(0)
            details = {"x_ModelId": u.model, "x_TokenDirection": direction, "x_CacheAction": cache}
            yield {
                "BilledCost": _number(cost),
                "BillingAccountId": u.provider,
                "BillingAccountName": f"{v.provider} ({v.service}) metered by llmmeter",
                "BillingCurrency": "USD",
                "BillingPeriodEnd": _iso(period_end),
                "BillingPeriodStart": _iso(period_start),
                "ChargeCategory": "Usage",
                "ChargeClass": "",
                "ChargeDescription": f"{u.model} {meter.lower()}",
                "ChargePeriodEnd": _iso(start + timedelta(days=1)),
                "ChargePeriodStart": _iso(start),
                "ContractedCost": _number(cost),
                "EffectiveCost": _number(cost),
                "InvoiceIssuerName": v.provider,
                "ListCost": _number(cost),
                "PricingQuantity": str(quantity),
                "PricingUnit": unit,
                "ProviderName": v.provider,
                "PublisherName": publisher(u.model, u.provider),
                "ServiceCategory": CATEGORY,
                "ServiceName": v.service,
                "ChargeFrequency": "Usage-Based",
                "ConsumedQuantity": str(quantity),
                "ConsumedUnit": unit,
                "ContractedUnitPrice": _number(unit_price),
                "ListUnitPrice": _number(unit_price),
                "PricingCategory": "Standard",
                "ServiceSubcategory": "Generative AI",
                "SkuId": sku,
                "SkuMeter": meter,
                "SkuPriceDetails": json.dumps(details, separators=(",", ":")),
                "SkuPriceId": sku,
                "SubAccountId": u.project,
                "SubAccountName": u.project,
                "Tags": json.dumps(tags, separators=(",", ":"), ensure_ascii=False) if tags else "",
                "x_ServiceProviderName": v.provider,
                "x_HostProviderName": v.host,
                "x_ModelId": u.model,
                "x_TokenClass": token_class,
                "x_Calls": str(u.calls),
                "x_Feature": u.feature if u.feature is not None else "",
                "x_User": u.user if u.user is not None else "",
            }


# ---- import -----------------------------------------------------------------------------------------------------

IMPORT_REQUIRED = (
    "BilledCost", "EffectiveCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd", "ServiceName",
    "ChargeCategory",
)  # fmt: skip
# AI services in the three clouds' FOCUS exports, when ServiceCategory is missing or older than 1.1's name
AI_SERVICES = (
    "bedrock", "openai", "vertex ai", "gemini", "generative language", "cognitive services", "ai foundry",
    "azure ai", "sagemaker", "claude", "anthropic",
)  # fmt: skip
# a cloud's FOCUS ServiceName -> the ledger's provider (gen_ai.provider.name), for the reconciliation view
LEDGER_PROVIDERS = (
    ("bedrock", "aws.bedrock"), ("azure openai", "azure.ai.openai"), ("cognitive services", "azure.ai.openai"),
    ("ai foundry", "azure.ai.inference"), ("vertex ai", "gcp.vertex_ai"), ("gemini", "gcp.gemini"),
    ("generative language", "gcp.gemini"),
)  # fmt: skip


class FocusError(ValueError):
    """A FOCUS file that cannot be imported; the message names the row and the column."""


@dataclass(frozen=True)
class CloudCost:
    """One AI-service row of a cloud's FOCUS export, as kept beside the ledger."""

    row: int
    charge_start: datetime
    charge_end: datetime
    provider: str  # ProviderName (1.2) / ServiceProviderName (1.3)
    service: str
    category: str
    sku: str
    description: str
    billed: Decimal
    effective: Decimal
    currency: str
    quantity: Decimal | None
    unit: str
    sub_account: str
    tags: dict[str, Any]
    ledger_provider: str


def is_ai(row: Mapping[str, Any]) -> bool:
    if (row.get("ServiceCategory") or "") == CATEGORY:
        return True
    service = f"{row.get('ServiceName') or ''} {row.get('ServiceSubcategory') or ''}".lower()
    return any(name in service for name in AI_SERVICES)


def ledger_provider(service: str) -> str:
    lowered = service.lower()
    for name, provider in LEDGER_PROVIDERS:
        if name in lowered:
            return provider
    return ""


def _moment(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise FocusError(f"{where}: not an ISO 8601 date/time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _decimal(value: Any, where: str, *, nullable: bool = False) -> Decimal | None:
    if value is None or value == "":
        if nullable:
            return None
        raise FocusError(f"{where}: must not be null")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise FocusError(f"{where}: not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise FocusError(f"{where}: not a finite number: {value!r}")
    return number


def parse_rows(rows_in: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> tuple[list[CloudCost], int]:
    """The AI-service rows of a FOCUS file (row numbers count from 1 after the header) and how many rows it had.
    FocusError, naming the row and the column, at the first row that breaks the rules the import relies on."""
    present = set(columns)
    missing = [c for c in IMPORT_REQUIRED if c not in present]
    if "ProviderName" not in present and "ServiceProviderName" not in present:
        missing.append("ProviderName")
    if missing:
        raise FocusError(f"not a FOCUS file: missing column(s) {', '.join(missing)}")
    kept: list[CloudCost] = []
    total = 0
    for index, row in enumerate(rows_in, start=1):
        total = index
        number = row.get("_row", index)  # the row's number in the file, when the rows are a selection of it
        if not is_ai(row):
            continue
        where = f"row {number}"
        currency = str(row.get("BillingCurrency") or "")
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise FocusError(f"{where}, BillingCurrency: must be an ISO 4217 code such as USD, got {currency!r}")
        start = _moment(row.get("ChargePeriodStart"), f"{where}, ChargePeriodStart")
        end = _moment(row.get("ChargePeriodEnd"), f"{where}, ChargePeriodEnd")
        if end <= start:
            raise FocusError(f"{where}, ChargePeriodEnd: must be after ChargePeriodStart")
        raw_tags = row.get("Tags")
        tags: Any = {}
        if raw_tags not in (None, ""):
            try:
                tags = json.loads(raw_tags) if isinstance(raw_tags, str) else dict(raw_tags)
            except (ValueError, TypeError):
                raise FocusError(f"{where}, Tags: not a JSON object: {str(raw_tags)[:80]!r}") from None
            if not isinstance(tags, dict):
                raise FocusError(f"{where}, Tags: not a JSON object")
        service = str(row.get("ServiceName") or "")
        billed = _decimal(row.get("BilledCost"), f"{where}, BilledCost")
        effective = _decimal(row.get("EffectiveCost"), f"{where}, EffectiveCost")
        assert billed is not None and effective is not None
        kept.append(
            CloudCost(
                row=number, charge_start=start, charge_end=end,
                provider=str(row.get("ServiceProviderName") or row.get("ProviderName") or ""), service=service,
                category=str(row.get("ServiceCategory") or ""), sku=str(row.get("SkuId") or ""),
                description=str(row.get("ChargeDescription") or ""), billed=billed, effective=effective,
                currency=currency, quantity=_decimal(row.get("ConsumedQuantity"), f"{where}, ConsumedQuantity",
                                                     nullable=True),
                unit=str(row.get("ConsumedUnit") or ""), sub_account=str(row.get("SubAccountId") or ""), tags=tags,
                ledger_provider=ledger_provider(service),
            )
        )  # fmt: skip
    return kept, total
