"""Copies of the documented API samples the tests rely on (from ../shared/reference/api, plus the ones added
here with their source): the tests read these, so a checkout without ../shared still runs them, never skips."""

from pathlib import Path

API = Path(__file__).resolve().parent / "api"
