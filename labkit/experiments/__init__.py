"""The labs: one module each, a `Lab` subclass registered with `labkit.lab.register`.

`labkit.lab.LAB_MODULES` names them; `labkit.lab.get_lab(name)` imports a lab's module on first use.
"""
