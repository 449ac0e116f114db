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
# HTTP + WebSocket; the TURN and SFU ports are added with their roles.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/duet"]
CMD ["serve"]
