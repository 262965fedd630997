"""llmmeter: know what your LLM calls cost.

``import llmmeter; llmmeter.instrument()`` patches the provider SDKs that are installed so every call
emits an OpenTelemetry GenAI span (tokens, model, attribution); a llmmeter collector prices them.
"""

from llmmeter import batches
from llmmeter.attribution import attributes, current_attributes
from llmmeter.bootstrap import instrument, uninstrument
from llmmeter.guard import BudgetExceeded
from llmmeter.invocation import TokenUsage
from llmmeter.manual import TrackedCall, current_call, record, track
from llmmeter.redaction import redact_pii
from llmmeter.telemetry import flush

__all__ = [
    "BudgetExceeded",
    "TokenUsage",
    "TrackedCall",
    "attributes",
    "batches",
    "current_attributes",
    "current_call",
    "flush",
    "instrument",
    "record",
    "redact_pii",
    "track",
    "uninstrument",
]
