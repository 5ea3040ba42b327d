#!/bin/sh
# deps.sh - install the Debian 12 packages IMS needs to build and test, only those missing.
set -eu
# postfix: for /usr/sbin/smtp-source (the load generator of tests/e2e/test_smtp_crash.py) and
# the private Postfix that bench/inbound.sh compares imsd with. Never a system-wide MTA: see below.
# nmap: its smtp-open-relay script is the relay audit tests/e2e/test_first_use.py runs.
# python3-dnslib: tests/dns_server.py, the DNS server of tests/unit/dns_test.c.
# openssl (the command): tests/tls_certs.py makes the TLS tests' certificates; python3-aiosmtpd
# is a TLS-offering peer for outbound tests; bsd-mailx is mail(1) over ims-sendmail.
# libcrypt-dev: libcrypt (libxcrypt) hashes the mailboxes' passwords with yescrypt (lib/store).
# dovecot-core (doveadm) and mutt: tests/e2e/test_maildir_readers.py reads the delivered Maildirs
# with them, with a private config and no server. Never a system-wide IMAP server: see below.
# systemd (systemd-analyze), strace and python3-seccomp: tests/e2e/test_unit_hardening.py rates
# data/msexchangeimc.service's confinement, then runs imsd inside it (its system call filter
# through libseccomp) under strace. Only the programs: nothing is started.
# libnet-ssleay-perl and libio-socket-ssl-perl: swaks --tls (tests/e2e/test_submission.py).
# prometheus: for promtool, which checks imsd's /metrics (tests/e2e/test_metrics.py). Only the
# program: no Prometheus server is started.
# chromium and chromium-driver: tests/e2e/test_admin_page.py drives headless Chromium over
# WebDriver through the administrator's page. Nothing else uses them.
PKGS="make gcc clang pkg-config liblmdb-dev lmdb-utils libevent-dev libssl-dev libc-ares-dev
libcrypt-dev libcmocka-dev libhivex-dev libhivex-bin python3-hivex python3-pytest swaks wine wine64 clang-format
postfix nmap dovecot-core mutt python3-dnslib openssl python3-aiosmtpd bsd-mailx
systemd strace python3-seccomp libnet-ssleay-perl libio-socket-ssl-perl prometheus
chromium chromium-driver"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
# Installing postfix would remove another mail server (exim4, ...): never do that to a machine
# that has one. Without postfix the smtp-source tests skip and bench/inbound.sh cannot run.
case " $missing " in
*" postfix "*)
    if [ -e /usr/sbin/sendmail ]; then
        echo "deps: another mail server is installed: not installing postfix (smtp-source)" >&2
        missing=$(echo "$missing" | sed 's/ postfix//')
    fi
    ;;
esac
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages:$missing (run 'make deps' as root)" >&2
    exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
case " $missing " in
*" postfix "*)
    # "No configuration": the postinst writes no main.cf and sets up no mail system, so no
    # Postfix listens on port 25. Only the programs are wanted (smtp-source, postfix -c DIR).
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    new_postfix=1
    ;;
*) new_postfix=0 ;;
esac
case " $missing " in
*" dovecot-core "*) new_dovecot=1 ;;
*) new_dovecot=0 ;;
esac
case " $missing " in
*" prometheus "*) new_prometheus=1 ;;
*) new_prometheus=0 ;;
esac
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
if [ "$new_postfix" = 1 ]; then
    # Should the postinst still have started the system instance (an init system that ignores
    # the missing main.cf), stop it and keep it from starting at boot.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now postfix.service >/dev/null 2>&1 || true
    fi
    if /usr/sbin/postfix status >/dev/null 2>&1; then
        /usr/sbin/postfix stop >/dev/null 2>&1 || true
    fi
fi
if [ "$new_prometheus" = 1 ]; then
    # Only promtool is wanted: the postinst may start the Prometheus server (port 9090).
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
fi
if [ "$new_dovecot" = 1 ]; then
    # dovecot-core's postinst starts the system Dovecot (IMAP/POP3 listeners once a protocol
    # package is added): only doveadm is wanted. Stop it and keep it from starting at boot.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/dovecot ]; then
        /etc/init.d/dovecot stop >/dev/null 2>&1 || true
        update-rc.d dovecot disable >/dev/null 2>&1 || true
    fi
    # A master the init system does not know of (started by hand, or no init system).
    if [ -x /usr/sbin/dovecot ]; then
        /usr/sbin/dovecot stop >/dev/null 2>&1 || true
    fi
fi
