"""sheets-sync: Instantly step analytics into a formatted Google Sheets tab."""

__version__ = "0.1.0"
USER_AGENT = f"sheets-sync/{__version__}"
