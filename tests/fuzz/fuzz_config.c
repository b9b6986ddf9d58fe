/* fuzz_config.c: libFuzzer target for the INI configuration files
 * (src/common/config.c): the file read from disk (config_load, through a
 * memfd, so the getc path with embedded NULs and overlong lines is the
 * daemons' own) and the same text from memory (config_parse_string), then
 * the typed getters and the unknown-key check the daemons make. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const sections[] = {"walrus", "clc",   "cc",
                                       "nc",     "koala", ""};
static const char *const keys[] = {
    "listen",
    "data_dir",
    "region",
    "domain",
    "max_connections",
    "tls_cert",
    "log_level",
    "kvm",
    "max_cache_size",
    "port",
    "cores",
    "memory",
    "disk",
    "clc",
    NULL,
};

static void getters(const struct config *cfg)
{
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        for (size_t k = 0; keys[k]; k++) {
            struct koala_error *err = NULL;
            int64_t i;
            bool b;
            uint64_t u;
            (void)config_get(cfg, sections[s], keys[k], NULL);
            config_get_int(cfg, sections[s], keys[k], 0, &i, &err);
            error_free(err);
            err = NULL;
            config_get_bool(cfg, sections[s], keys[k], false, &b, &err);
            error_free(err);
            err = NULL;
            config_get_size(cfg, sections[s], keys[k], 0, &u, &err);
            error_free(err);
        }
        (void)config_unknown_key(cfg, sections[s], keys);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0) {
        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct koala_error *err = NULL;
    struct config *cfg = config_load(path, &err);
    if (cfg) {
        getters(cfg);
        config_set(cfg, "walrus", "listen", "127.0.0.1:1");
        config_free(cfg);
    }
    error_free(err);

    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    err = NULL;
    cfg = config_parse_string(text, &err);
    if (cfg) {
        getters(cfg);
        config_free(cfg);
    }
    error_free(err);
    free(text);
    return 0;
}
