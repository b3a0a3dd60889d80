"""Built-in attacks, one module each."""

from auditor.hookspecs import hookimpl
from plugins.attacks.autoattack import AutoAttack
from plugins.attacks.cw import CW, CWL2
from plugins.attacks.fgsm import FGSM
from plugins.attacks.pgd import PGD
from plugins.attacks.seg_fgsm import SegFGSM
from plugins.attacks.seg_lesion_removal import SegLesionRemoval
from plugins.attacks.seg_pgd import SegPGD
from plugins.attacks.seg_square import SegSquare
from plugins.attacks.square import Square
from plugins.attacks.zoo import ZOO

DEFAULT_BATTERY: tuple[str, ...] = ("fgsm", "pgd", "cw", "autoattack", "square", "zoo")


@hookimpl
def medaudit_register_attacks(register):
    for attack in (FGSM(), PGD(), CW(), CWL2(), AutoAttack(), Square(), ZOO(),
                   SegFGSM("bce"), SegFGSM("dice"), SegPGD("bce"), SegPGD("dice"), SegLesionRemoval(), SegSquare()):
        register(attack)
