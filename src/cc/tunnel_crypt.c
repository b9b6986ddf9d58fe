/* tunnel_crypt.c: the sealing of tunnel packets and the relay that
 * carries them between routers (see tunnel_crypt.h). */
#define LOG_MODULE "cc"
#include "tunnel_crypt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "cc.h"
#include "log.h"
#include "tunnel.h"

/* ---- sealing ---- */

static const char KDF_LABEL[] = "koala-tunnel-1";

void tunnel_direction_key(const uint8_t secret[TUNNEL_SECRET_BYTES],
                          const char *src, const char *dst, uint8_t out[32])
{
    uint8_t msg[sizeof(KDF_LABEL) + 2 * 16];
    size_t n = 0;
    memcpy(msg, KDF_LABEL, sizeof(KDF_LABEL)); /* with its NUL */
    n += sizeof(KDF_LABEL);
    size_t ls = strnlen(src, 15) + 1, ld = strnlen(dst, 15) + 1;
    memcpy(msg + n, src, ls - 1);
    msg[n + ls - 1] = 0;
    n += ls;
    memcpy(msg + n, dst, ld - 1);
    msg[n + ld - 1] = 0;
    n += ld;
    unsigned len = 32;
    HMAC(EVP_sha256(), secret, TUNNEL_SECRET_BYTES, msg, n, out, &len);
}

void tunnel_session_key(const uint8_t dir_key[32],
                        const uint8_t session[TUNNEL_SESSION_BYTES],
                        uint8_t out[32])
{
    unsigned len = 32;
    HMAC(EVP_sha256(), dir_key, 32, session, TUNNEL_SESSION_BYTES, out, &len);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void nonce_of(uint64_t counter, uint8_t iv[12])
{
    memset(iv, 0, 4);
    put_be64(iv + 4, counter);
}

/* Seals with ctx, which holds AES-256-GCM and the session's key; only the
 * nonce is set per packet. */
static size_t seal_with(EVP_CIPHER_CTX *ctx,
                        const uint8_t session[TUNNEL_SESSION_BYTES],
                        uint64_t counter, const uint8_t *in, size_t len,
                        uint8_t *out)
{
    out[0] = 'K';
    out[1] = 'T';
    out[2] = 1;
    out[3] = 0;
    memcpy(out + 4, session, TUNNEL_SESSION_BYTES);
    put_be64(out + 4 + TUNNEL_SESSION_BYTES, counter);
    uint8_t iv[12];
    nonce_of(counter, iv);
    int n = 0, fin = 0;
    if (len <= TUNNEL_MAX_PACKET &&
        EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) == 1 &&
        EVP_EncryptUpdate(ctx, NULL, &n, out, TUNNEL_HEADER_BYTES) == 1 &&
        EVP_EncryptUpdate(ctx, out + TUNNEL_HEADER_BYTES, &n, in, (int)len) ==
            1 &&
        EVP_EncryptFinal_ex(ctx, out + TUNNEL_HEADER_BYTES + n, &fin) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TUNNEL_TAG_BYTES,
                            out + TUNNEL_HEADER_BYTES + len) == 1)
        return len + TUNNEL_SEAL_OVERHEAD;
    return 0;
}

size_t tunnel_seal(const uint8_t session_key[32],
                   const uint8_t session[TUNNEL_SESSION_BYTES],
                   uint64_t counter, const uint8_t *in, size_t len,
                   uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t rc = 0;
    if (ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, session_key,
                                  NULL) == 1)
        rc = seal_with(ctx, session, counter, in, len, out);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

bool tunnel_peek(const uint8_t *in, size_t len,
                 uint8_t session[TUNNEL_SESSION_BYTES], uint64_t *counter)
{
    if (len < TUNNEL_SEAL_OVERHEAD || in[0] != 'K' || in[1] != 'T' ||
        in[2] != 1 || in[3] != 0)
        return false;
    memcpy(session, in + 4, TUNNEL_SESSION_BYTES);
    *counter = get_be64(in + 4 + TUNNEL_SESSION_BYTES);
    return true;
}

/* Opens with ctx, which holds AES-256-GCM and the session's key. */
static long open_with(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len,
                      uint8_t *out)
{
    uint8_t session[TUNNEL_SESSION_BYTES];
    uint64_t counter;
    if (!tunnel_peek(in, len, session, &counter) ||
        len - TUNNEL_SEAL_OVERHEAD > TUNNEL_MAX_PACKET)
        return -1;
    size_t body = len - TUNNEL_SEAL_OVERHEAD;
    uint8_t iv[12], tag[TUNNEL_TAG_BYTES];
    nonce_of(counter, iv);
    memcpy(tag, in + TUNNEL_HEADER_BYTES + body, TUNNEL_TAG_BYTES);
    int n = 0, fin = 0;
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) == 1 &&
        EVP_DecryptUpdate(ctx, NULL, &n, in, TUNNEL_HEADER_BYTES) == 1 &&
        EVP_DecryptUpdate(ctx, out, &n, in + TUNNEL_HEADER_BYTES, (int)body) ==
            1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TUNNEL_TAG_BYTES, tag) ==
            1 &&
        EVP_DecryptFinal_ex(ctx, out + n, &fin) == 1)
        return (long)body;
    return -1;
}

long tunnel_open(const uint8_t session_key[32], const uint8_t *in, size_t len,
                 uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    long rc = -1;
    if (ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, session_key,
                                  NULL) == 1)
        rc = open_with(ctx, in, len, out);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

bool tunnel_window_accept(struct tunnel_window *w, uint64_t counter)
{
    if (counter == 0)
        return false;
    if (counter > w->top) {
        uint64_t shift = counter - w->top;
        w->seen = shift >= 64 ? 0 : w->seen << shift;
        w->seen |= 1;
        w->top = counter;
        return true;
    }
    uint64_t back = w->top - counter;
    if (back >= 64 || (w->seen >> back) & 1)
        return false;
    w->seen |= (uint64_t)1 << back;
    return true;
}

/* ---- the relay ---- */

struct rx_session {
    bool used;
    uint8_t id[TUNNEL_SESSION_BYTES];
    uint8_t key[32];
    struct tunnel_window window;
};

struct relay_peer {
    char address[16];
    struct sockaddr_in wan; /* its relay */
    int inner_fd;
    uint16_t inner_port;
    uint8_t tx_key[32];     /* this relay's session toward it */
    uint8_t rx_dir_key[32]; /* K(it -> us) */
    struct rx_session rx[2];
    unsigned rx_next;
};

struct tunnel_relay {
    pthread_t thread;
    bool started;
    int wake[2];
    int wan_fd;
    char local[16];
    char *netns;
    pthread_mutex_t mu; /* everything below; never held across poll() */
    struct relay_peer *peers;
    size_t n;
    uint8_t secret[TUNNEL_SECRET_BYTES];
    bool have_secret;
    uint8_t session[TUNNEL_SESSION_BYTES];
    uint64_t counter; /* shared by all peers: no (key, nonce) repeats even
                         when a peer leaves and comes back */
    bool stop;
    atomic_uint_fast64_t sealed, opened, dropped_auth, dropped_replay,
        dropped_unknown;
    /* The relay thread's cipher contexts and the keys they hold: loaded
     * again only when the next packet is of another key (a key schedule
     * per packet cost more than the cipher). */
    struct key_ctx {
        EVP_CIPHER_CTX *ctx;
        uint8_t key[32];
        bool loaded;
    } enc, dec;
};

/* kc holding key (for encrypting or decrypting), or NULL. */
static EVP_CIPHER_CTX *keyed(struct key_ctx *kc, const uint8_t key[32],
                             bool encrypt)
{
    if (kc->loaded && CRYPTO_memcmp(kc->key, key, 32) == 0)
        return kc->ctx;
    kc->loaded = false;
    if (kc->ctx == NULL && (kc->ctx = EVP_CIPHER_CTX_new()) == NULL)
        return NULL;
    int ok = encrypt ? EVP_EncryptInit_ex(kc->ctx, EVP_aes_256_gcm(), NULL,
                                          key, NULL)
                     : EVP_DecryptInit_ex(kc->ctx, EVP_aes_256_gcm(), NULL,
                                          key, NULL);
    if (ok != 1)
        return NULL;
    memcpy(kc->key, key, 32);
    kc->loaded = true;
    return kc->ctx;
}

static struct relay_peer *peer_by_fd(struct tunnel_relay *r, int fd)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->peers[i].inner_fd == fd)
            return &r->peers[i];
    return NULL;
}

static struct relay_peer *peer_by_addr(struct tunnel_relay *r,
                                       const struct sockaddr_in *sa)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->peers[i].wan.sin_addr.s_addr == sa->sin_addr.s_addr &&
            r->peers[i].wan.sin_port == sa->sin_port)
            return &r->peers[i];
    return NULL;
}

/* Packets move in batches: one recvmmsg takes what is queued (up to
 * RELAY_BATCH), one sendmmsg sends what came of it. */
#define RELAY_BATCH 32

struct batch {
    struct mmsghdr msg[RELAY_BATCH];
    struct iovec iov[RELAY_BATCH];
    struct sockaddr_in addr[RELAY_BATCH];
    uint8_t *buf[RELAY_BATCH];
};

static void batch_free(struct batch *b)
{
    for (int i = 0; b && i < RELAY_BATCH; i++)
        free(b->buf[i]);
    free(b);
}

static struct batch *batch_new(size_t buf_size)
{
    struct batch *b = calloc(1, sizeof(*b));
    for (int i = 0; b && i < RELAY_BATCH; i++)
        if ((b->buf[i] = malloc(buf_size)) == NULL) {
            batch_free(b);
            return NULL;
        }
    return b;
}

/* Arms message i of b for a receive (or a send of len bytes to `to`). */
static void arm(struct batch *b, int i, size_t len,
                const struct sockaddr_in *to)
{
    b->iov[i] = (struct iovec){.iov_base = b->buf[i], .iov_len = len};
    if (to)
        b->addr[i] = *to;
    b->msg[i].msg_hdr = (struct msghdr){.msg_name = &b->addr[i],
                                        .msg_namelen = sizeof(b->addr[i]),
                                        .msg_iov = &b->iov[i],
                                        .msg_iovlen = 1};
    b->msg[i].msg_len = 0;
}

static int receive(int fd, struct batch *in, size_t size)
{
    for (int i = 0; i < RELAY_BATCH; i++)
        arm(in, i, size, NULL);
    return recvmmsg(fd, in->msg, RELAY_BATCH, MSG_DONTWAIT, NULL);
}

static void send_all(int fd, struct batch *out, int n,
                     atomic_uint_fast64_t *counter)
{
    int off = 0;
    while (off < n) {
        int sent = sendmmsg(fd, out->msg + off, (unsigned)(n - off),
                            MSG_DONTWAIT);
        if (sent <= 0)
            break; /* a full buffer: the rest is lost, as on a wire */
        atomic_fetch_add(counter, (uint_fast64_t)sent);
        off += sent;
    }
}

/* From the kernel's kvx0 toward a peer: how many packets were taken. */
static int outbound(struct tunnel_relay *r, int fd, struct batch *in,
                    struct batch *out)
{
    int n = receive(fd, in, TUNNEL_MAX_PACKET);
    if (n <= 0)
        return 0;
    int k = 0;
    pthread_mutex_lock(&r->mu);
    struct relay_peer *p = peer_by_fd(r, fd);
    EVP_CIPHER_CTX *ctx = p && r->have_secret
                              ? keyed(&r->enc, p->tx_key, true)
                              : NULL;
    for (int i = 0; ctx && i < n; i++) {
        size_t sealed = seal_with(ctx, r->session, ++r->counter, in->buf[i],
                                  in->msg[i].msg_len, out->buf[k]);
        if (sealed)
            arm(out, k++, sealed, &p->wan);
    }
    pthread_mutex_unlock(&r->mu);
    send_all(r->wan_fd, out, k, &r->sealed);
    return n;
}

/* One sealed packet from a peer's relay into out's slot k: true when it
 * is authentic, new and armed for kvx0 (r->mu held). */
static bool open_one(struct tunnel_relay *r, const uint8_t *in, size_t len,
                     const struct sockaddr_in *from, struct batch *out, int k,
                     const struct sockaddr_in *vx)
{
    uint8_t session[TUNNEL_SESSION_BYTES];
    uint64_t counter;
    struct relay_peer *p = peer_by_addr(r, from);
    if (p == NULL || !r->have_secret ||
        !tunnel_peek(in, len, session, &counter)) {
        atomic_fetch_add(&r->dropped_unknown, 1);
        return false;
    }
    struct rx_session *s = NULL, fresh = {.used = true};
    for (int i = 0; i < 2; i++)
        if (p->rx[i].used && memcmp(p->rx[i].id, session, sizeof(session)) == 0)
            s = &p->rx[i];
    if (s == NULL) {
        memcpy(fresh.id, session, sizeof(session));
        tunnel_session_key(p->rx_dir_key, session, fresh.key);
    }
    EVP_CIPHER_CTX *ctx = keyed(&r->dec, s ? s->key : fresh.key, false);
    long plain = ctx ? open_with(ctx, in, len, out->buf[k]) : -1;
    bool ok = false;
    if (plain < 0) {
        atomic_fetch_add(&r->dropped_auth, 1);
    } else {
        if (s == NULL) { /* an authentic new session: keep it */
            s = &p->rx[p->rx_next];
            p->rx_next ^= 1;
            *s = fresh;
        }
        ok = tunnel_window_accept(&s->window, counter);
        if (!ok)
            atomic_fetch_add(&r->dropped_replay, 1);
    }
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    if (ok)
        arm(out, k, (size_t)plain, vx);
    return ok;
}

/* From peers' relays toward the kernel's kvx0 (at tunnel_address:4789,
 * sent from the WAN socket: this host's own, so the input rule lets it
 * in): how many packets were taken. */
static int inbound(struct tunnel_relay *r, struct batch *in,
                   struct batch *out)
{
    int n = receive(r->wan_fd, in, TUNNEL_MAX_PACKET + 64);
    if (n <= 0)
        return 0;
    struct sockaddr_in vx = {.sin_family = AF_INET,
                             .sin_port = htons(CC_TUNNEL_PORT)};
    inet_pton(AF_INET, r->local, &vx.sin_addr);
    int k = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < n; i++)
        k += open_one(r, in->buf[i], in->msg[i].msg_len, &in->addr[i], out, k,
                      &vx);
    pthread_mutex_unlock(&r->mu);
    send_all(r->wan_fd, out, k, &r->opened);
    return n;
}

static void *relay_main(void *arg)
{
    struct tunnel_relay *r = arg;
    struct batch *in = batch_new(TUNNEL_MAX_PACKET + 64);
    struct batch *out = batch_new(TUNNEL_MAX_PACKET + 2 * TUNNEL_SEAL_OVERHEAD);
    struct pollfd *fds = calloc(2 + CC_TUNNEL_MAX_PEERS, sizeof(*fds));
    if (in == NULL || out == NULL || fds == NULL) {
        log_error("tunnel relay: out of memory");
        goto out;
    }
    for (;;) {
        pthread_mutex_lock(&r->mu);
        if (r->stop) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = r->wan_fd, .events = POLLIN};
        for (size_t i = 0; i < r->n; i++)
            fds[n++] = (struct pollfd){.fd = r->peers[i].inner_fd,
                                       .events = POLLIN};
        pthread_mutex_unlock(&r->mu);
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("tunnel relay: poll: %s", strerror(errno));
            break;
        }
        if (fds[0].revents) {
            char drain[64];
            while (read(r->wake[0], drain, sizeof(drain)) > 0)
                ;
            continue; /* the peers may have changed: poll them anew */
        }
        /* Drain while whole batches come, a few at a time per socket so
         * that one direction cannot starve the other. */
        if (fds[1].revents & POLLIN)
            for (int i = 0; i < 8 && inbound(r, in, out) == RELAY_BATCH; i++)
                ;
        for (size_t j = 2; j < n; j++)
            if (fds[j].revents & POLLIN)
                for (int i = 0;
                     i < 8 && outbound(r, fds[j].fd, in, out) == RELAY_BATCH;
                     i++)
                    ;
    }
out:
    batch_free(in);
    batch_free(out);
    free(fds);
    return NULL;
}

/* Room for bursts: a sender faster than the relay for a moment must not
 * turn into losses (TCP through the tunnel reads them as congestion).
 * The FORCE options pass net.core.[rw]mem_max, as root. */
static void big_buffers(int fd)
{
    int size = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

static void wake(struct tunnel_relay *r)
{
    ssize_t w = write(r->wake[1], "x", 1);
    (void)w;
}

/* Closes the peers' sockets and forgets their keys (r->mu held, or the
 * thread gone). */
static void drop_peers(struct tunnel_relay *r)
{
    for (size_t j = 0; j < r->n; j++)
        if (r->peers[j].inner_fd >= 0)
            close(r->peers[j].inner_fd);
    if (r->peers)
        OPENSSL_cleanse(r->peers, r->n * sizeof(*r->peers));
    free(r->peers);
    r->peers = NULL;
    r->n = 0;
}

struct tunnel_relay *tunnel_relay_start(const char *netns, const char *local,
                                        struct koala_error **err)
{
    struct tunnel_relay *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->wake[0] = r->wake[1] = r->wan_fd = -1;
    snprintf(r->local, sizeof(r->local), "%s", local);
    r->netns = netns ? strdup(netns) : NULL;
    if (pipe2(r->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        error_set_errno(err, "pipe");
        goto fail;
    }
    r->wan_fd = proc_socket_in(netns, SOCK_DGRAM, local, TUNNEL_RELAY_PORT,
                               err);
    if (r->wan_fd < 0 || RAND_bytes(r->session, sizeof(r->session)) != 1)
        goto fail;
    big_buffers(r->wan_fd);
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        error_set(err, EAGAIN, NULL, "cannot start the tunnel relay");
        goto fail;
    }
    r->started = true;
    log_info("tunnels: encrypting relay on %s:%d", local, TUNNEL_RELAY_PORT);
    return r;
fail:
    tunnel_relay_free(r);
    return NULL;
}

int tunnel_relay_set(struct tunnel_relay *r,
                     const uint8_t secret[TUNNEL_SECRET_BYTES],
                     struct tunnel_relay_peer *peers, size_t n,
                     struct koala_error **err)
{
    struct relay_peer *next = calloc(n ? n : 1, sizeof(*next));
    if (next == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_lock(&r->mu);
    bool rekey = !r->have_secret ||
                 CRYPTO_memcmp(r->secret, secret, TUNNEL_SECRET_BYTES) != 0;
    if (rekey) {
        memcpy(r->secret, secret, TUNNEL_SECRET_BYTES);
        r->have_secret = true;
        if (RAND_bytes(r->session, sizeof(r->session)) != 1) {
            pthread_mutex_unlock(&r->mu);
            free(next);
            return error_set(err, EIO, NULL, "no random bytes");
        }
    }
    size_t made = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct relay_peer *p = &next[i];
        struct relay_peer *old = NULL;
        for (size_t j = 0; j < r->n; j++)
            if (strcmp(r->peers[j].address, peers[i].address) == 0)
                old = &r->peers[j];
        if (old) {
            *p = *old;
            old->inner_fd = -1; /* moved */
            if (rekey)
                memset(p->rx, 0, sizeof(p->rx));
        } else {
            snprintf(p->address, sizeof(p->address), "%s", peers[i].address);
            p->wan.sin_family = AF_INET;
            p->wan.sin_port = htons(TUNNEL_RELAY_PORT);
            if (inet_pton(AF_INET, p->address, &p->wan.sin_addr) != 1) {
                rc = error_set(err, EINVAL, "InvalidParameterValue",
                               "peer address %s", p->address);
                break;
            }
            p->inner_fd = proc_socket_in(r->netns, SOCK_DGRAM, r->local, 0, err);
            struct sockaddr_in sa;
            socklen_t sl = sizeof(sa);
            if (p->inner_fd < 0 ||
                getsockname(p->inner_fd, (struct sockaddr *)&sa, &sl) < 0) {
                if (p->inner_fd >= 0)
                    error_set_errno(err, "tunnel relay socket");
                rc = -1;
                break;
            }
            p->inner_port = ntohs(sa.sin_port);
            big_buffers(p->inner_fd);
        }
        made++;
        uint8_t dir[32];
        tunnel_direction_key(secret, r->local, p->address, dir);
        tunnel_session_key(dir, r->session, p->tx_key);
        tunnel_direction_key(secret, p->address, r->local, p->rx_dir_key);
        OPENSSL_cleanse(dir, sizeof(dir));
        peers[i].inner_port = p->inner_port;
    }
    if (rc < 0) { /* undo: the old table stays as it was */
        for (size_t i = 0; i < made; i++) {
            struct relay_peer *p = &next[i];
            bool moved = false;
            for (size_t j = 0; j < r->n; j++)
                if (strcmp(r->peers[j].address, p->address) == 0 &&
                    r->peers[j].inner_fd == -1) {
                    r->peers[j].inner_fd = p->inner_fd;
                    moved = true;
                }
            if (!moved && p->inner_fd >= 0)
                close(p->inner_fd);
        }
        if (next[made].inner_fd > 0)
            close(next[made].inner_fd);
        OPENSSL_cleanse(next, n * sizeof(*next));
        free(next);
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    drop_peers(r);
    r->peers = next;
    r->n = n;
    pthread_mutex_unlock(&r->mu);
    wake(r);
    return 0;
}

void tunnel_relay_stats(struct tunnel_relay *r, struct tunnel_relay_stats *out)
{
    out->sealed = atomic_load(&r->sealed);
    out->opened = atomic_load(&r->opened);
    out->dropped_auth = atomic_load(&r->dropped_auth);
    out->dropped_replay = atomic_load(&r->dropped_replay);
    out->dropped_unknown = atomic_load(&r->dropped_unknown);
}

void tunnel_relay_free(struct tunnel_relay *r)
{
    if (r == NULL)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_mutex_unlock(&r->mu);
        wake(r);
        pthread_join(r->thread, NULL);
    }
    struct tunnel_relay_stats st;
    tunnel_relay_stats(r, &st);
    log_info("tunnels: relay stopped after sealing %llu and opening %llu "
             "packets; dropped %llu forged, %llu replayed, %llu from no peer",
             (unsigned long long)st.sealed, (unsigned long long)st.opened,
             (unsigned long long)st.dropped_auth,
             (unsigned long long)st.dropped_replay,
             (unsigned long long)st.dropped_unknown);
    drop_peers(r);
    OPENSSL_cleanse(r->secret, sizeof(r->secret));
    EVP_CIPHER_CTX_free(r->enc.ctx);
    EVP_CIPHER_CTX_free(r->dec.ctx);
    OPENSSL_cleanse(&r->enc, sizeof(r->enc));
    OPENSSL_cleanse(&r->dec, sizeof(r->dec));
    for (int i = 0; i < 2; i++)
        if (r->wake[i] >= 0)
            close(r->wake[i]);
    if (r->wan_fd >= 0)
        close(r->wan_fd);
    free(r->netns);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
