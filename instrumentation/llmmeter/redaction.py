"""PII redaction for captured prompt and completion content, applied before anything leaves the process.

``redact_pii(text)`` replaces e-mail addresses, phone numbers, payment card numbers (Luhn-checked),
US social security numbers and IBANs (mod-97-checked) with ``[REDACTED_<KIND>]``. Checksums keep
ordinary numbers (order ids, amounts) from being redacted as cards or IBANs.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|\(\d{2,4}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,3}"  # (020) 7946 0958
    r"|\d{2,4}(?:[ .-]\d{2,4}){2,4}"  # 415-555-0132, 06 12 34 56 78
    r")(?![\w])"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 mod-97 check: move the first four characters to the end, letters to numbers."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return "[REDACTED_CARD]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()


def _iban(match: re.Match[str]) -> str:
    return "[REDACTED_IBAN]" if iban_valid(match.group()) else match.group()


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group())
    if not 7 <= digits <= 15 or _DATE.fullmatch(match.group()):
        return match.group()
    return "[REDACTED_PHONE]"


def redact_pii(text: str) -> str:
    """``text`` with e-mails, IBANs, card numbers, US SSNs and phone numbers replaced by placeholders."""
    if not text:
        return text
    if "@" in text:
        text = _EMAIL.sub("[REDACTED_EMAIL]", text)
    if not any(c.isdigit() for c in text):
        return text  # every remaining kind contains digits: skip the regexes for plain prose
    text = _IBAN.sub(_iban, text)
    text = _CARD.sub(_card, text)
    text = _SSN.sub("[REDACTED_SSN]", text)
    return _PHONE.sub(_phone, text)
