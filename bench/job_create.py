"""Creating a 100,000-item check job through the API, and reading its results back as streamed
CSV: how long each answer takes and how much the API process's memory grows.

The real app (lifespan included) is served in this process over ASGI, on a scratch database at
the schema's head and the machine's Redis (database 15), so the process's RSS is the API's: it
is printed before the upload, its peak during the creation (VmHWM, reset first) and during the
results' download. The body is a CSV of distinct Mexico City numbers with a reference column;
`--start` makes a started job instead of a draft (its submits `waiting`, nothing sent here).

    .venv/bin/python bench/job_create.py                # 100,000 items
    .venv/bin/python bench/job_create.py --items 20000

Run it alone (`flock /tmp/phonebridge-bench.lock ...`); the load average is printed before and
after. The issue's figure: the creation answers in < 10 s and raises the API's RSS by < 100 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx
from support import scratch_database

from service.api.app import create_app
from service.config import build_settings
from service.features.keys import create_client_and_key

MIB = 1024


def status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise LookupError(field)


def reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


async def run(items: int, start: bool) -> None:
    with scratch_database("bench_job_create", migrated=True) as database:
        settings = build_settings(
            database_url=database.sqlalchemy_url,
            redis_url="redis://127.0.0.1:6379/15",
            secret_key="bench-job-create-" + "k" * 32,
            upstream_api_id="bench",
            upstream_api_secret="bench",
        )
        key = await create_client_and_key(settings, "bench")
        body = (
            "phone_number,reference\n"
            + "\n".join(f"+52 55 {index:08d},ref-{index}" for index in range(items))
            + "\n"
        ).encode()
        app = create_app(settings)
        headers = {"Authorization": f"Bearer {key}"}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", timeout=300
            ) as api:
                warm = await api.post(
                    "/v1/check-jobs?start=false",
                    content=b"phone_number\n+52 55 9999 9999\n",
                    headers={**headers, "Content-Type": "text/csv"},
                )
                assert warm.status_code == 201, warm.text
                rss_before = status_kib("VmRSS")
                reset_peak()
                started = time.perf_counter()
                created = await api.post(
                    f"/v1/check-jobs?start={'true' if start else 'false'}",
                    content=body,
                    headers={**headers, "Content-Type": "text/csv"},
                )
                took = time.perf_counter() - started
                assert created.status_code == 201, created.text
                peak = status_kib("VmHWM")
                job = created.json()
                print(
                    f"create: {items} items ({len(body) / MIB / MIB:.1f} MiB CSV) answered 201 in "
                    f"{took:.2f} s; to_submit {job['counts']['to_submit']}"
                )
                print(
                    f"API RSS: {rss_before / MIB:.0f} MiB before, peak {peak / MIB:.0f} MiB "
                    f"(+{(peak - rss_before) / MIB:.0f} MiB)"
                )
                reset_peak()
                rss_before = status_kib("VmRSS")
                started = time.perf_counter()
                size = 0
                async with api.stream(
                    "GET",
                    f"/v1/check-jobs/{job['id']}/results",
                    headers={**headers, "Accept": "text/csv"},
                ) as response:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                took = time.perf_counter() - started
                peak = status_kib("VmHWM")
                print(
                    f"results CSV: {size / MIB / MIB:.1f} MiB streamed in {took:.2f} s; API RSS "
                    f"peak +{(peak - rss_before) / MIB:.0f} MiB"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--start", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    asyncio.run(run(args.items, args.start))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
