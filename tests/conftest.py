pytest_plugins = [
    "tests.db_fixtures",
    "tests.plugin_fakes",
    "tests.plugin_web",
    "tests.plugin_addon",
    "tests.smtp_helpers",
]
