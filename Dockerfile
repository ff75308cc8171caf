# syntax=docker/dockerfile:1
# Two images from one source (cmd/sidecar/main.go says why):
#   hangup (the last stage, the default): what runs in the app's pod,
#     sidecar proxy | init-redirect | wait | version, under 20 MB;
#   hangup-tools: every subcommand, the webhook's `sidecar inject` among
#     them (client-go), and demo and notify-check.
# Build: docker build -t hangup-dev/hangup:0.1.0 .
#        docker build --target hangup-tools -t hangup-dev/hangup-tools:0.1.0 .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: the final images have no libc.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/tools/sidecar ./cmd/sidecar
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -tags=hangup_pod -ldflags="-s -w" -o /out/pod/sidecar ./cmd/sidecar

# distroless static, nonroot variant: no shell, no package manager, uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot AS hangup-tools
COPY --from=build /out/tools/sidecar /usr/local/bin/sidecar
# The chart's values.uid; the injector's DefaultUID.
USER 65532:65532
# 8443 webhook.
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/sidecar"]

FROM gcr.io/distroless/static-debian12:nonroot AS hangup
COPY --from=build /out/pod/sidecar /usr/local/bin/sidecar
USER 65532:65532
# 16006 sidecar inbound (proxyPort), 16020 admin (adminPort).
EXPOSE 16006 16020
ENTRYPOINT ["/usr/local/bin/sidecar"]
