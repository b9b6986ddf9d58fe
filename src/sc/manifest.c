/* manifest.c: snapshot manifests and block hashes (manifest.h). */
#include "manifest.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"

size_t sc_manifest_count(uint64_t volume_size, uint32_t block_size)
{
    return block_size ? (size_t)((volume_size + block_size - 1) / block_size)
                      : 0;
}

int sc_manifest_init(struct sc_manifest *m, uint64_t volume_size,
                     uint32_t block_size, struct koala_error **err)
{
    memset(m, 0, sizeof(*m));
    if (block_size == 0 || volume_size == 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "a manifest needs a size and a block size");
    m->volume_size = volume_size;
    m->block_size = block_size;
    m->n = sc_manifest_count(volume_size, block_size);
    m->hash = calloc(m->n, sizeof(*m->hash));
    if (m->hash == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

void sc_manifest_clear(struct sc_manifest *m)
{
    free(m->hash);
    memset(m, 0, sizeof(*m));
}

bool sc_hash_valid(const char *s)
{
    return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

char *sc_manifest_dump(const struct sc_manifest *m, const char *snapshot_id,
                       const char *volume_id, size_t *len)
{
    json_t *blocks = json_array();
    for (size_t i = 0; blocks && i < m->n; i++)
        json_array_append_new(blocks, m->hash[i][0] ? json_string(m->hash[i])
                                                    : json_null());
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:o}", "snapshotId",
                          snapshot_id, "volumeId", volume_id, "volumeSize",
                          (json_int_t)m->volume_size, "blockSize",
                          (json_int_t)m->block_size, "blocks", blocks);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text && len)
        *len = strlen(text);
    return text;
}

int sc_manifest_parse(const char *text, size_t len, struct sc_manifest *m,
                      struct koala_error **err)
{
    memset(m, 0, sizeof(*m));
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    if (o == NULL)
        return error_set(err, EINVAL, "InvalidManifest", "manifest: %s",
                         je.text);
    json_int_t size = json_integer_value(json_object_get(o, "volumeSize"));
    json_int_t bs = json_integer_value(json_object_get(o, "blockSize"));
    json_t *blocks = json_object_get(o, "blocks");
    int rc = -1;
    if (size <= 0 || bs <= 0 || bs > (1 << 30) || !json_is_array(blocks)) {
        error_set(err, EINVAL, "InvalidManifest",
                  "manifest: no volumeSize, blockSize or blocks");
        goto out;
    }
    if (sc_manifest_init(m, (uint64_t)size, (uint32_t)bs, err) < 0)
        goto out;
    if (json_array_size(blocks) != m->n) {
        error_set(err, EINVAL, "InvalidManifest",
                  "manifest: %zu blocks for %zu", json_array_size(blocks),
                  m->n);
        goto out;
    }
    for (size_t i = 0; i < m->n; i++) {
        json_t *h = json_array_get(blocks, i);
        if (json_is_null(h))
            continue;
        const char *s = json_string_value(h);
        if (s == NULL || !sc_hash_valid(s)) {
            error_set(err, EINVAL, "InvalidManifest",
                      "manifest: block %zu has no valid hash", i);
            goto out;
        }
        memcpy(m->hash[i], s, 65);
    }
    rc = 0;
out:
    json_decref(o);
    if (rc < 0)
        sc_manifest_clear(m);
    return rc;
}

bool sc_block_hash(const void *data, size_t len, char out[65])
{
    const unsigned char *p = data;
    size_t i = 0;
    /* zero check a word at a time; most of a fresh volume is zeros */
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w)
            break;
    }
    for (; i < len && p[i] == 0; i++)
        ;
    if (i == len) {
        out[0] = '\0';
        return false;
    }
    checksum_sha256_hex(data, len, out);
    return true;
}
