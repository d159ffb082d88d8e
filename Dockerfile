# phonebridge: one image for every process (migrate, api, worker, scheduler, upstream-sim,
# demo-receiver); docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PHONEBRIDGE_DATA_DIR=/var/lib/phonebridge

WORKDIR /app
# The locked versions (scripts/lock), each file checked against its hash, then the package itself
# without resolving its dependencies again; `pip check` proves the lock satisfies them. The
# dependencies come first so that a change to the code alone reuses their layer.
COPY requirements/runtime.txt ./requirements/
RUN pip install --require-hashes -r requirements/runtime.txt
# README.md* : the package's metadata reads the README when there is one.
COPY pyproject.toml README.md* ./
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-deps . \
    && pip check \
    && useradd --system --uid 10001 --home-dir /var/lib/phonebridge --create-home phonebridge

USER phonebridge
EXPOSE 8000
ENTRYPOINT ["phonebridge"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
