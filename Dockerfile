# The mcall operator image, for machines with a container engine and a registry.
#
# It cannot be built on this project's own machines: they have no container engine and no
# registry. There, `cargo xtask image` assembles the same image without either
# (tests/src/image/: a docker-archive tar that `ctr images import` loads into containerd), and
# tests/tests/image.rs checks that this file's final stage runs it the same way (USER,
# ENTRYPOINT, CMD, EXPOSE).
#
#   docker build -t ghcr.io/mcall/mcall-operator:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mcall --bin mcall \
 && cp target/release/mcall /mcall

# `cmd` tasks run `/bin/sh -c …` inside the operator, so the image needs a shell.
FROM debian:bookworm-slim AS busybox
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox-static \
 && rm -rf /var/lib/apt/lists/*

# distroless cc: Debian 12's glibc and libgcc (what the bookworm builder linked against), the CA
# bundle rustls-native-certs reads, a nonroot user 65532 and /tmp: the same contents
# `cargo xtask image` takes from the host, plus busybox-static for /bin/sh as there. Not
# debian:bookworm-slim: its dash, coreutils and apt would give `cmd` tasks tools the locally
# built image lacks (a task could pass in one and fail in the other), and more to patch.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /mcall /usr/local/bin/mcall
COPY --from=busybox /bin/busybox /bin/busybox
# distroless:nonroot runs as 65532, which may not write /bin; exec form, as there is no shell yet.
USER 0:0
RUN ["/bin/busybox", "ln", "-s", "busybox", "/bin/sh"]
USER 65532:65532
ENV PATH=/usr/local/bin:/usr/bin:/bin
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mcall"]
CMD ["operator"]
