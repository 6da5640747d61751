# cgwd: thin targets. `make demo` and `make test` do all set-up on a fresh Debian machine as root.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=

# Debian packages the daemon, the tests and the demo use:
#  - iproute2, nftables: links, routes, namespaces and the MSS clamp
#  - strongswan-*: the real IKE peer that plays AWS's side in tests, the lab and the demo
#  - iperf3, tcpdump, strace: traffic, captures and byte-for-byte netlink checks
#  - iputils-ping: reachability checks in the lab, the demo and the netns tests
#  - user-mode-linux, kmod: a kernel with ESP/VTI for the kernel datapath tests
#  - openssl: the reference figures in bench/
#  - systemd: systemd-analyze verify/security for the unit file
#  - python3-venv: the virtualenvs of `make test` and `make install` on a plain Debian Python
#  - iptables: iptables-legacy, the MSS clamp's fallback on kernels whose nftables lacks the
#    inet family (Debian's UML kernel among them)
DEBIAN_PACKAGES := iproute2 nftables strongswan-charon strongswan-swanctl \
	libcharon-extra-plugins libstrongswan-extra-plugins iperf3 tcpdump strace iputils-ping \
	user-mode-linux kmod openssl systemd python3-venv iptables

.PHONY: all deps debian-packages venv lint typecheck unit test test-fast demo bench install clean

all: test

debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(STAMP)

deps: debian-packages venv

lint: venv
	$(VENV)/bin/ruff check cgwd tests bench
	$(VENV)/bin/ruff format --check cgwd tests bench

typecheck: venv
	$(VENV)/bin/mypy

test: deps lint typecheck
	$(VENV)/bin/pytest -n 4 --dist loadfile $(PYTEST_ARGS)

# Unit tests only, no root needed.
test-fast: venv
	$(VENV)/bin/pytest -m "not netns and not strongswan and not uml" $(PYTEST_ARGS)

demo: deps
	$(PY) -m cgwd.demo

bench: deps
	$(PY) -m bench

# `make install`: cgwd in its own virtualenv (Debian's Python refuses system-wide pip
# installs, PEP 668), the command on PATH, the unit, the tmpfiles entry and an example
# configuration (never overwriting one). Every directory can be moved for packaging or
# tests: make install PREFIX=... BINDIR=... SYSCONFDIR=... UNITDIR=... TMPFILESDIR=...
PREFIX      ?= /opt/cgwd
BINDIR      ?= /usr/local/bin
SYSCONFDIR  ?= /etc/cgwd
UNITDIR     ?= /etc/systemd/system
TMPFILESDIR ?= /usr/lib/tmpfiles.d

install:
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/python -m pip install -q --disable-pip-version-check .
	install -d $(BINDIR)
	ln -sf $(PREFIX)/bin/cgwd $(BINDIR)/cgwd
	install -d -m 0700 $(SYSCONFDIR)
	[ -e $(SYSCONFDIR)/cgwd.toml ] || install -m 0600 config/cgwd.toml $(SYSCONFDIR)/cgwd.toml
	install -d $(UNITDIR) $(TMPFILESDIR)
	sed -e 's|/usr/local/bin/cgwd|$(BINDIR)/cgwd|; s|/etc/cgwd/cgwd.toml|$(SYSCONFDIR)/cgwd.toml|' \
		systemd/cgwd.service > $(UNITDIR)/cgwd.service
	chmod 0644 $(UNITDIR)/cgwd.service
	install -m 0644 systemd/cgwd.tmpfiles $(TMPFILESDIR)/cgwd.conf
	@if [ "$(TMPFILESDIR)" = /usr/lib/tmpfiles.d ] && command -v systemd-tmpfiles >/dev/null; then \
		systemd-tmpfiles --create $(TMPFILESDIR)/cgwd.conf; fi
	@echo "installed: $(BINDIR)/cgwd -> $(PREFIX), $(UNITDIR)/cgwd.service, $(SYSCONFDIR)/cgwd.toml"
	@echo "next: put your AWS download in $(SYSCONFDIR) (chmod 600), edit cgwd.toml, cgwd check, systemctl enable --now cgwd"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
