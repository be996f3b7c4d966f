# The notebooks in this folder are collected by nbval; share the test settings.
from tests.conftest import *  # noqa: F401,F403
