# Backdesk: the two everyday commands. Both work on a fresh Debian 12 machine
# (run as root there, or install the system packages they name first).
#
#   make run    start Backdesk locally with demo data (Ctrl-C stops everything)
#   make test   run the whole test suite on SQLite, then again on PostgreSQL
#               (make test PYTEST_ARGS="-x -k workers" passes options to pytest)

.PHONY: run test

run:
	@bash scripts/run.sh

test:
	@bash scripts/test.sh $(PYTEST_ARGS)
