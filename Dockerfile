# syntax=docker/dockerfile:1
#
# One image per shopflow service, from this one Dockerfile:
#
#   docker build --build-arg SERVICE=payment -t shopflow/payment .
#
# SERVICE is order, payment, inventory or shipping. The build stage
# compiles services/$SERVICE/cmd/$SERVICE as a static binary outside the
# workspace (GOWORK=off): each service module reaches pkg/events and
# pkg/platform through its go.mod replace directives, so only those and
# the service itself are copied, and one service's change does not rebuild
# the others. It also compiles deploy/healthcheck, the probe compose runs,
# since the final image has no shell, curl or wget.
#
# The final stage is distroless "static" on Debian 13 (CA certificates,
# tzdata, /etc/passwd, nothing else) running as the unprivileged user
# nonroot (uid 65532). The debian12 images lost support in September 2026;
# the build stage may stay on bookworm, since it only produces static
# binaries.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE
RUN case "${SERVICE}" in order|payment|inventory|shipping) ;; \
      *) echo "build-arg SERVICE must be order, payment, inventory or shipping (got '${SERVICE}')" >&2; exit 1 ;; \
    esac
ENV CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-trimpath
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when a go.mod
# or go.sum changes.
COPY pkg/events/go.mod pkg/events/go.sum pkg/events/
COPY pkg/platform/go.mod pkg/platform/go.sum pkg/platform/
COPY services/${SERVICE}/go.mod services/${SERVICE}/go.sum services/${SERVICE}/
RUN cd services/${SERVICE} && go mod download

COPY deploy/healthcheck/ deploy/healthcheck/
RUN --mount=type=cache,target=/root/.cache/go-build \
    cd deploy/healthcheck && go build -ldflags="-s -w" -o /out/healthcheck .

COPY pkg/ pkg/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN --mount=type=cache,target=/root/.cache/go-build \
    cd services/${SERVICE} && go build -ldflags="-s -w" -o /out/service ./cmd/${SERVICE}

FROM gcr.io/distroless/static-debian13:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="shopflow-${SERVICE}" \
      org.opencontainers.image.description="shopflow ${SERVICE} service"
COPY --from=build /out/service /app/service
COPY --from=build /out/healthcheck /app/healthcheck
USER nonroot:nonroot
# The service traps SIGTERM and shuts down in order within SHUTDOWN_TIMEOUT
# (compose's stop_grace_period is longer).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/service"]
