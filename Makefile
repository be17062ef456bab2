# Shortcuts; the scripts are the source of truth (they work without make).
.PHONY: run test install bench
run:
	scripts/run
test:
	scripts/test
install:
	scripts/install
bench:
	scripts/bench
