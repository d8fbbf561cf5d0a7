# syntax=docker/dockerfile:1
# healthd: build a virtualenv in one stage, copy only it into a slim runtime stage.
#   docker build -t healthd:0.1.0 .                       # base install
#   docker build --build-arg EXTRAS=postgres,redis -t healthd:0.1.0 .
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY healthd ./healthd
RUN python -m venv /opt/healthd \
 && /opt/healthd/bin/pip install ".${EXTRAS:+[$EXTRAS]}" \
 && find /opt/healthd -name '__pycache__' -prune -exec rm -rf {} +

FROM python:${PYTHON}-slim
RUN groupadd --system --gid 10001 healthd \
 && useradd --system --uid 10001 --gid healthd --no-create-home --shell /usr/sbin/nologin healthd
COPY --from=build /opt/healthd /opt/healthd
ENV PATH=/opt/healthd/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The packaged default config listens on $HEALTHD_LISTEN: inside a container loopback
# answers nobody, so `docker run -p 8099:8099 healthd` needs every address.
ENV HEALTHD_LISTEN=0.0.0.0:8099
USER 10001:10001
EXPOSE 8099
# SIGTERM starts the drain (readiness 503, listeners open for shutdown.drain_delay);
# give `docker stop -t` at least drain_delay + grace.
STOPSIGNAL SIGTERM
# `healthd probe /livez` reads the address from the config (its server.listen: here
# $HEALTHD_LISTEN; a config of your own: set HEALTHD_CONFIG=/path instead of `run -c`,
# and the HEALTHCHECK probes the address that file listens on).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["healthd", "probe", "/livez", "--timeout", "2s"]
ENTRYPOINT ["healthd"]
CMD ["run"]
