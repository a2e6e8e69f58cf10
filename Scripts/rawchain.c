// rawchain: the baseline bench-flashcrowd sets beside Ferry's CPU cost. The same bytes travel
// the same chain (origin -> device 1 -> device 2 -> ...), with the cryptography Ferry does and
// nothing else: every hop is libzmq PUSH -> PULL over TCP with CURVE, every 64 KiB packet is
// sealed once with ChaCha20-Poly1305 (IETF, the packet's index as its nonce), and every device
// opens every packet, checks every 256 KiB chunk's SHA-256 against a list made beforehand,
// writes the plaintext to its output and passes the sealed packet on as it came, before the
// chunk is whole (zero-copy: the received message is the one sent). Each process writes the
// CPU seconds it used (user + system, its libzmq threads included) to a file when it ends.
//
//   rawchain manifest CONTENT HASHES
//   rawchain source CONTENT BIND CPU_FILE
//   rawchain member UPSTREAM DOWNSTREAM_BIND|- OUTPUT HASHES SIZE CPU_FILE
//
// A benchmark's tool: it checks what it must to be a fair baseline and exits 1 on any failure.
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

// Ferry's default layout (FERRY_PACKET_SIZE, FERRY_CHUNK_SIZE) and credit window (FERRY_WINDOW_PACKETS).
enum { PACKET = 65536, CHUNK = 262144, TAG = crypto_aead_chacha20poly1305_ietf_ABYTES, HEADER = 8, WINDOW = 32 };

static unsigned char content_key[crypto_aead_chacha20poly1305_ietf_KEYBYTES];

static void fail(const char *what) {
    fprintf(stderr, "rawchain: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static void nonce_for(uint64_t index, unsigned char nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES]) {
    memset(nonce, 0, crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
    memcpy(nonce, &index, sizeof index);
}

static void write_cpu(const char *path) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    FILE *file = fopen(path, "w");
    if (!file) fail(path);
    fprintf(file, "%.3f\n", usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
    fclose(file);
}

static unsigned char *read_all(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    struct stat info;
    if (fd < 0 || fstat(fd, &info) != 0) fail(path);
    unsigned char *bytes = malloc(info.st_size ? info.st_size : 1);
    size_t done = 0;
    while (done < (size_t)info.st_size) {
        ssize_t got = read(fd, bytes + done, info.st_size - done);
        if (got <= 0) fail(path);
        done += got;
    }
    close(fd);
    *size = done;
    return bytes;
}

// A CURVE server key the whole chain shares: a baseline needs the handshake's cost, not key
// management.
static void server_keys(char public_key[41], char secret_key[41]) {
    unsigned char secret[32];
    memset(secret, 7, sizeof secret);
    zmq_z85_encode(secret_key, secret, sizeof secret);
    if (zmq_curve_public(public_key, secret_key) != 0) fail("zmq_curve_public");
}

static void *bind_sender(void *context, const char *endpoint) {
    char public_key[41], secret_key[41];
    server_keys(public_key, secret_key);
    void *socket = zmq_socket(context, ZMQ_PUSH);
    int on = 1, window = WINDOW;
    zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &on, sizeof on);
    zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, secret_key, 40);
    zmq_setsockopt(socket, ZMQ_SNDHWM, &window, sizeof window);
    if (zmq_bind(socket, endpoint) != 0) fail(endpoint);
    return socket;
}

static int manifest(const char *content_path, const char *hashes_path) {
    size_t size;
    unsigned char *content = read_all(content_path, &size);
    FILE *out = fopen(hashes_path, "w");
    if (!out) fail(hashes_path);
    for (size_t offset = 0; offset < size; offset += CHUNK) {
        unsigned char hash[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(hash, content + offset, size - offset < CHUNK ? size - offset : CHUNK);
        fwrite(hash, 1, sizeof hash, out);
    }
    fclose(out);
    return 0;
}

static int source(const char *content_path, const char *bind, const char *cpu_file) {
    size_t size;
    unsigned char *content = read_all(content_path, &size);
    void *context = zmq_ctx_new();
    void *out = bind_sender(context, bind);
    for (uint64_t index = 0; index * PACKET < size; index++) {
        size_t length = size - index * PACKET < PACKET ? size - index * PACKET : PACKET;
        zmq_msg_t message;
        zmq_msg_init_size(&message, HEADER + length + TAG);
        unsigned char *bytes = zmq_msg_data(&message), nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
        memcpy(bytes, &index, HEADER);
        nonce_for(index, nonce);
        crypto_aead_chacha20poly1305_ietf_encrypt(bytes + HEADER, NULL, content + index * PACKET, length, NULL, 0, NULL, nonce, content_key);
        if (zmq_msg_send(&message, out, 0) < 0) fail("send");
    }
    zmq_close(out);
    zmq_ctx_term(context);  // lingers until every packet is gone
    write_cpu(cpu_file);
    return 0;
}

static int member(const char *upstream, const char *downstream, const char *output, const char *hashes_path, size_t size,
                  const char *cpu_file) {
    size_t hashes_size;
    unsigned char *hashes = read_all(hashes_path, &hashes_size);
    void *context = zmq_ctx_new();
    void *in = zmq_socket(context, ZMQ_PULL);
    char server_public[41], server_secret[41], public_key[41], secret_key[41];
    server_keys(server_public, server_secret);
    zmq_curve_keypair(public_key, secret_key);
    int window = WINDOW;
    zmq_setsockopt(in, ZMQ_CURVE_SERVERKEY, server_public, 40);
    zmq_setsockopt(in, ZMQ_CURVE_PUBLICKEY, public_key, 40);
    zmq_setsockopt(in, ZMQ_CURVE_SECRETKEY, secret_key, 40);
    zmq_setsockopt(in, ZMQ_RCVHWM, &window, sizeof window);
    if (zmq_connect(in, upstream) != 0) fail(upstream);
    void *out = strcmp(downstream, "-") == 0 ? NULL : bind_sender(context, downstream);
    int fd = open(output, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail(output);
    unsigned char *plain = malloc(CHUNK);
    crypto_hash_sha256_state chunk_hash;
    uint64_t packets = (size + PACKET - 1) / PACKET;
    for (uint64_t expected = 0; expected < packets; expected++) {
        zmq_msg_t message;
        zmq_msg_init(&message);
        if (zmq_msg_recv(&message, in, 0) < 0) fail("receive");
        const unsigned char *bytes = zmq_msg_data(&message);
        uint64_t index;
        memcpy(&index, bytes, HEADER);
        size_t length = zmq_msg_size(&message) - HEADER - TAG;
        size_t in_chunk = (index * PACKET) % CHUNK;
        unsigned char nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
        nonce_for(index, nonce);
        if (index != expected || zmq_msg_size(&message) < HEADER + TAG
            || crypto_aead_chacha20poly1305_ietf_decrypt(plain + in_chunk, NULL, NULL, bytes + HEADER, length + TAG, NULL, 0, nonce, content_key) != 0) {
            errno = 0;
            fail("a packet out of order or failing its tag");
        }
        if (in_chunk == 0) crypto_hash_sha256_init(&chunk_hash);
        crypto_hash_sha256_update(&chunk_hash, plain + in_chunk, length);
        if (pwrite(fd, plain + in_chunk, length, index * PACKET) != (ssize_t)length) fail(output);
        if (out) {
            if (zmq_msg_send(&message, out, 0) < 0) fail("send");
        } else {
            zmq_msg_close(&message);
        }
        if (in_chunk + length == CHUNK || index + 1 == packets) {
            unsigned char hash[crypto_hash_sha256_BYTES];
            crypto_hash_sha256_final(&chunk_hash, hash);
            uint64_t chunk = index * PACKET / CHUNK;
            if ((chunk + 1) * sizeof hash > hashes_size || memcmp(hash, hashes + chunk * sizeof hash, sizeof hash) != 0) {
                errno = 0;
                fail("a chunk failing its hash");
            }
        }
    }
    close(fd);
    zmq_close(in);
    if (out) zmq_close(out);
    zmq_ctx_term(context);
    write_cpu(cpu_file);
    return 0;
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) fail("sodium_init");
    memset(content_key, 0x42, sizeof content_key);
    if (argc == 4 && strcmp(argv[1], "manifest") == 0) return manifest(argv[2], argv[3]);
    if (argc == 5 && strcmp(argv[1], "source") == 0) return source(argv[2], argv[3], argv[4]);
    if (argc == 8 && strcmp(argv[1], "member") == 0) return member(argv[2], argv[3], argv[4], argv[5], strtoull(argv[6], NULL, 10), argv[7]);
    fprintf(stderr, "usage: rawchain manifest CONTENT HASHES | source CONTENT BIND CPU_FILE | "
                    "member UPSTREAM DOWNSTREAM_BIND|- OUTPUT HASHES SIZE CPU_FILE\n");
    return 2;
}
