"""The browser tests of the notebooks and panels share one Lab and one Chromium per package."""
from lab_fixtures import make

lab, liveml, chromium, page = make("package")
