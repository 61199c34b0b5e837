/* The shell tests' JSON reader, since a clean machine may have neither jq
 * nor Python: prints the value at a dotted path of a JSON file.
 * usage: json_get FILE PATH
 * PATH is keys and array indexes joined by dots ("runs.0.k"); a last part
 * "#" prints the number of items of the array or object it follows. Numbers
 * print as integers when they are whole, strings as they are, anything else
 * as compact JSON. Exit 1 with a message when FILE is not JSON or PATH is
 * not in it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textio.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: json_get FILE PATH\n");
        return 2;
    }
    char *text;
    size_t len;
    if (rk_read_file(argv[1], (size_t)1 << 30, &text, &len) != RK_OK) {
        fprintf(stderr, "json_get: %s\n", rk_last_error());
        return 1;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) {
        fprintf(stderr, "json_get: %s is not JSON\n", argv[1]);
        return 1;
    }
    const cJSON *at = root;
    int count = 0;
    char *path = strdup(argv[2]);
    for (char *part = strtok(path, "."); part && at; part = strtok(NULL, ".")) {
        char *end;
        const long i = strtol(part, &end, 10);
        if (strcmp(part, "#") == 0) {
            count = 1;
            at = cJSON_IsArray(at) || cJSON_IsObject(at) ? at : NULL;
        } else
            at = cJSON_IsArray(at) && *end == '\0' ? cJSON_GetArrayItem(at, (int)i)
                                                   : cJSON_GetObjectItemCaseSensitive(at, part);
    }
    free(path);
    int status = 0;
    if (!at) {
        fprintf(stderr, "json_get: %s has no %s\n", argv[1], argv[2]);
        status = 1;
    } else if (count) {
        printf("%d\n", cJSON_GetArraySize(at));
    } else if (cJSON_IsString(at)) {
        printf("%s\n", at->valuestring);
    } else if (cJSON_IsNumber(at) && at->valuedouble == floor(at->valuedouble) &&
               fabs(at->valuedouble) < 1e15) {
        printf("%.0f\n", at->valuedouble);
    } else {
        char *s = cJSON_PrintUnformatted(at);
        printf("%s\n", s);
        free(s);
    }
    cJSON_Delete(root);
    return status;
}
