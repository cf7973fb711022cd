#!/usr/bin/env bash
# Take the console's screenshots for README (docs/console/*.png) by running its browser
# tests with REFUNDBRIDGE_SCREENSHOTS set; the tests assert what each page shows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
mkdir -p docs/console
REFUNDBRIDGE_SCREENSHOTS=docs/console .venv/bin/pytest -q tests/console/test_console_browser.py \
  tests/console/test_console_recalls_browser.py \
  "tests/console/test_receive.py::test_a_scanner_typing_a_gs1_scan_finds_the_case_and_records_the_receipt" "$@"
mkdir -p docs/status
REFUNDBRIDGE_SCREENSHOTS=docs/status .venv/bin/pytest -q tests/status/test_status_browser.py
