"""``lrp_widgets.composites`` is the engine's own module: ``from lrp_widgets.composites import ...`` works.

Importing this file puts :mod:`lrp_widgets.engine.composites` in its place, so both names refer to one
module object (``lrp_widgets.composites is lrp_widgets.engine.composites``).
"""
import sys

from .engine import composites as _engine_composites

sys.modules[__name__] = _engine_composites
