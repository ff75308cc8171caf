# syntax=docker/dockerfile:1
# One image for the sidecar, the webhook and init-redirect:
#   sidecar proxy | inject | init-redirect | version
# Build: docker build -t hangup-dev/hangup:0.1.0 .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binary: the final image has no libc.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/sidecar ./cmd/sidecar

# distroless static, nonroot variant: no shell, no package manager, uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sidecar /usr/local/bin/sidecar
# The chart's values.uid; the injector's DefaultUID.
USER 65532:65532
# 16006 sidecar inbound (proxyPort), 16020 admin (adminPort), 8443 webhook.
EXPOSE 16006 16020 8443
ENTRYPOINT ["/usr/local/bin/sidecar"]
