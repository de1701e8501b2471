"""The submission image's build: the build contexts sent to Docker and the report printed after a build."""
