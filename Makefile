# Shortcuts; the scripts are the source of truth (they work without make).
.PHONY: run test install
run:
	scripts/run
test:
	scripts/test
install:
	scripts/install
