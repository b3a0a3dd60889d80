"""Built-in attacks, one module each."""

from auditor.hookspecs import hookimpl
from plugins.attacks.autoattack import AutoAttack
from plugins.attacks.cw import CW, CWL2
from plugins.attacks.detector_pgd import DetectorAwarePGD
from plugins.attacks.fgsm import FGSM
from plugins.attacks.hopskipjump import HopSkipJump
from plugins.attacks.pgd import PGD
from plugins.attacks.rays import RayS
from plugins.attacks.seg_fgsm import SegFGSM
from plugins.attacks.seg_lesion_removal import SegLesionRemoval
from plugins.attacks.seg_pgd import SegPGD
from plugins.attacks.seg_square import SegSquare
from plugins.attacks.square import Square
from plugins.attacks.targeted_pgd import TargetedPGD
from plugins.attacks.training import TradesTraining, TrainingPGD
from plugins.attacks.transfer import TransferAttack
from plugins.attacks.uap import UAP
from plugins.attacks.zoo import ZOO


@hookimpl
def medaudit_register_attacks(register):
    for attack in (FGSM(), PGD(), CW(), CWL2(), AutoAttack(), Square(), ZOO(), HopSkipJump(), RayS(),
                   SegFGSM("bce"), SegFGSM("dice"), SegPGD("bce"), SegPGD("dice"), SegLesionRemoval(), SegSquare(),
                   # internal: the engine's clinical, detection and training attacks
                   TargetedPGD(), DetectorAwarePGD(), TrainingPGD(), TradesTraining(),
                   TransferAttack("pgd"), TransferAttack("autoattack"), UAP()):
        register(attack)
