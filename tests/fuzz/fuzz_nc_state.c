/* fuzz_nc_state.c: libFuzzer target for the NC's instance state file
 * (instances/<id>/instance.json, read back at start by
 * nc_instance_from_json in src/nc/instance.c).  An instance that loads must
 * survive a round trip: written out again (nc_instance_to_json), it loads,
 * and writes the same text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct koala_error *err = NULL;
    struct nc_instance *i =
        nc_instance_from_json((const char *)data, size, &err);
    error_free(err);
    if (i == NULL)
        return 0;
    char *text = nc_instance_to_json(i);
    if (text) {
        err = NULL;
        struct nc_instance *again =
            nc_instance_from_json(text, strlen(text), &err);
        if (again == NULL) {
            fprintf(stderr, "written instance.json does not load: %s\n%s\n",
                    error_message(err), text);
            abort();
        }
        char *text2 = nc_instance_to_json(again);
        if (text2 == NULL || strcmp(text, text2) != 0) {
            fprintf(stderr, "instance.json changed on a round trip:\n%s\n%s\n",
                    text, text2 ? text2 : "(null)");
            abort();
        }
        free(text2);
        nc_instance_free(again);
        error_free(err);
    }
    free(text);
    nc_instance_free(i);
    return 0;
}
