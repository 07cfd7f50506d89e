/* Another program linked with mproc: a child spawned from it cannot find
 * a target of the test binary, and must say so and exit with
 * MP_EXIT_BOOTSTRAP. */
#include <mproc.h>

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    return 0;
}
