# Thin wrappers around ./dev, which needs nothing but bash.
.PHONY: up test install lint typecheck bench
up:
	./dev up
test:
	./dev test
install:
	./dev install
lint:
	./dev lint
typecheck:
	./dev typecheck
bench:
	./dev bench
