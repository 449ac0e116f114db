# Build a static duet binary, then ship it alone on a minimal, non-root image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/duet ./cmd/duet

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/duet /usr/local/bin/duet
USER nonroot:nonroot
# HTTP + WebSocket, the TURN relay (3478) and the SFU (8443), UDP and TCP.
EXPOSE 8080 3478/udp 3478/tcp 8443/udp 8443/tcp
ENTRYPOINT ["/usr/local/bin/duet"]
CMD ["serve"]
