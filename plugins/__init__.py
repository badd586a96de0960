"""Integration files for file managers and image apps, installed by `findsimilar integrate`."""
