# Oort's container image: the `oort` binary alone, on a distroless base, as a non-root user.
# Build: docker build -t oort .   Run: docker run -p 9180:9180 oort --help

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p oort-gateway \
 && cp target/release/oort /oort

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /oort /oort
# Clients (WebSocket) and the backend API, when the config splits them as the chart does.
EXPOSE 9180 9181
USER nonroot:nonroot
ENTRYPOINT ["/oort"]
