/* fuzz_soap.c: libFuzzer target for SOAP envelopes (src/common/soap.h), as
 * the CLC, CC and NC read them from their peers: soap_parse (envelope,
 * body element, Faults turned into errors), then soap_text and soap_int on
 * every child of the operation element, and the Fault written back for
 * the error, as a server replies. */
#include <stdint.h>
#include <stdlib.h>

#include "soap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    struct koala_error *err = NULL;
    if (soap_parse((const char *)data, size, &doc, &body, &err) == 0) {
        int i = 0;
        for (const struct xml_node *c = xml_next_child(body, NULL, NULL);
             c && i < 256; c = xml_next_child(body, c, NULL), i++) {
            struct koala_error *e = NULL;
            char *t = soap_text(body, xml_name(c), &e);
            free(t);
            error_free(e);
            e = NULL;
            long long v;
            soap_int(body, xml_name(c), -1, &v, &e);
            error_free(e);
        }
        struct koala_error *e = NULL;
        char *t = soap_text(body, "instanceId", &e);
        free(t);
        error_free(e);
    } else {
        size_t len;
        free(soap_fault(err, &len));
    }
    error_free(err);
    xml_doc_free(doc);
    return 0;
}
