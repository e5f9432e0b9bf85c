# syntax=docker/dockerfile:1
# Ferry as a small container: a static binary (no cgo: SQLite is modernc's
# pure Go, PDFium runs as WebAssembly) on a distroless base, as non-root.
#   docker build -t ferry .
#   docker run -p 8000:8000 -v ferry-data:/data ferry
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ferry ./cmd/ferry \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /ferry
# The data directory: SQLite and the generated key when there is no
# DATABASE_URL, PDFium's compiled code in any case. Mount a volume here.
COPY --from=build --chown=nonroot:nonroot /out/data /data
ENV HOST=0.0.0.0 PORT=8000 FERRY_DATA_DIR=/data
EXPOSE 8000
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 CMD ["/ferry", "healthcheck"]
ENTRYPOINT ["/ferry"]
CMD ["serve"]
