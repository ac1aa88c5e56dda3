"""``lrp_widgets.rules`` is the engine's own module: ``from lrp_widgets.rules import ...`` works.

Importing this file puts :mod:`lrp_widgets.engine.rules` in its place, so both names refer to one
module object (``lrp_widgets.rules is lrp_widgets.engine.rules``).
"""
import sys

from .engine import rules as _engine_rules

sys.modules[__name__] = _engine_rules
