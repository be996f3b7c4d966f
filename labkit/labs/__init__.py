"""The labs: one package each (`labkit/labs/<lab>/`), holding everything only that lab uses.

Nothing lists them: `labkit.lab.discover()` imports every package here, and each registers its `Lab`
subclass with `@register`. A `labkit/labs/` folder elsewhere on `sys.path` adds its packages too.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
