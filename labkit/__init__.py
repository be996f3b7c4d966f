"""labkit: the library behind the deep-learning lab workbook.

Import the pieces from their modules (`labkit.engine.fit`, `labkit.device.pick_device`, ...)
or from here for the most used names.
"""

__version__ = "0.1.0"
