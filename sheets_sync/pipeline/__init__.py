"""The refresh pipeline: fetch from Instantly, build the report, render it, write it once."""
