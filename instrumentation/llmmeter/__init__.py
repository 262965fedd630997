"""llmmeter: know what your LLM calls cost.

``import llmmeter; llmmeter.instrument()`` patches the provider SDKs that are installed so every call
emits an OpenTelemetry GenAI span (tokens, model, attribution); a llmmeter collector prices them.
"""

from llmmeter.attribution import attributes, current_attributes
from llmmeter.bootstrap import instrument, uninstrument
from llmmeter.telemetry import flush

__all__ = ["attributes", "current_attributes", "flush", "instrument", "uninstrument"]
