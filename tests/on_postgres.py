"""Run the database tests again on PostgreSQL (the second pass of `make test`), or say why not."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from devtools import backing


def main(args: list[str]) -> int:
    """Run pytest on the tests marked django_db against a fresh PostgreSQL test database."""
    reason = backing.postgres_missing()
    if reason is not None:
        print(f"SKIPPED the PostgreSQL pass: {reason}")
        return 0
    # pytest-django creates and drops test_<name>; a random name keeps concurrent runs apart.
    url = backing.database_url(f"voicebridge_{secrets.token_hex(4)}")
    print(f"PostgreSQL pass: the database tests again on {url}", flush=True)
    command = [sys.executable, "-m", "pytest", "-m", "django_db", *args]
    return subprocess.call(command, env={**os.environ, "TEST_DATABASE_URL": url})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
