"""labkit: the library behind the deep-learning lab workbook. Import the pieces from their modules
(`labkit.runner.run`, `labkit.engine.fit`, `labkit.labs.mnist`, ...)."""

from pkgutil import extend_path

__version__ = "0.1.0"
# A `labkit/labs/<lab>/` package elsewhere on sys.path adds a lab (see labkit.labs): labkit's path and
# labkit.labs's path both extend over sys.path.
__path__ = extend_path(__path__, __name__)
