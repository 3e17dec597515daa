"""Root test configuration: real servers and database fixtures from hospital.testing."""

pytest_plugins = ["hospital.testing.fixtures"]
