# authledger service image: `authledger serve` by default; `authledger worker` for workers.
# The build stage copies exactly what the wheel is made of: pyproject.toml, the README it
# names, and the packages of [tool.hatch.build.targets.wheel]. tests/integration/
# test_packages.py builds the wheel from these COPY lines and starts the app from it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY events events
COPY projections projections
COPY service service
COPY workers workers
COPY migrations migrations
COPY subscriber subscriber
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app authledger
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER authledger
ENV AUTHLEDGER_LOG_FORMAT=json
EXPOSE 8000
# `serve` answers /healthz; a `worker` (or `migrate`) container has no HTTP port and is
# healthy while its process runs (a worker that fails exits, and the container with it).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import sys, urllib.request; cmd = open('/proc/1/cmdline', 'rb').read().split(b'\0'); sys.exit(b'serve' in cmd and urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
ENTRYPOINT ["authledger"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
