"""DICOM de-identification: the PS3.15 Basic Application Level Confidentiality Profile.

Reports name attribute keywords and counts only, never values; pydicom's own logging (which
can quote tag values) is silenced while it works.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ImageError
from ..fileio import atomic_writer
from .decode import quiet_pydicom, read_dataset

# No well-kept library on our dependency list implements PS3.15, so the Basic Application Level
# Confidentiality Profile (PS3.15 2024b Table E.1-1, basic-profile column) is held here as keywords,
# backed by catch-alls (every PN, date/time, non-standard UID and private tag) for unlisted attributes.
# Actions: Z and Z/D -> emptied (kept present, so type 2 attributes stay valid); X, D, X/Z, X/D, X/Z/D ->
# removed (dummy values would still be made up data; removal is the stricter choice); X/Z/U*
# (ReferencedImageSequence, SourceImageSequence) -> kept with their UIDs replaced.

DEID_EMPTY = frozenset(
    """
AccessionNumber CalibrationDateTime ClinicalTrialCoordinatingCenterName ClinicalTrialProtocolName
ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialTimePointID
ConceptualVolumeCombinationDescription ConceptualVolumeDescription ConsultingPhysicianName
ContentCreatorName ContentDate ContentTime ContrastBolusAgent DeviceAlternateIdentifier
FillerOrderNumberImagingServiceRequest FractionationNotes InstructionPerformedDateTime
IssuerOfTheContainerIdentifierSequence IssuerOfTheSpecimenIdentifierSequence
ManufacturerDeviceIdentifier ParticipationDateTime PatientBirthDate PatientID PatientName PatientSex
PlacerOrderNumberImagingServiceRequest PrescriptionNotes PrescriptionNotesSequence ROIInterpreter
ROIName RTAccessoryDeviceSlotID RTAccessoryHolderSlotID RTPhysicianIntentNarrative
RadiationGenerationModeDescription ReasonForSuperseding ReferringPhysicianName ReviewDate ReviewTime
SourceOfPreviousValues SpecimenPreparationSequence StructureSetDate StructureSetTime StudyDate StudyID
StudyTime TreatmentTechniqueNotes VerifyingObserverIdentificationCodeSequence
""".split()
)
DEID_REMOVE = frozenset(
    """
AcquisitionComments AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
AcquisitionDeviceProcessingDescription AcquisitionFieldOfViewLabel AcquisitionProtocolDescription
AcquisitionTime ActualHumanPerformersSequence AdditionalPatientHistory AddressTrial AdmissionID
AdmittingDate AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription AdmittingTime Allergies
AnnotationGroupDescription AnnotationGroupLabel ApprovalStatusDateTime Arbitrary AssertionDateTime
AssertionExpirationDateTime AttributeModificationDateTime AuthorObserverSequence BarcodeValue
BeamDescription BeamHoldTransitionDateTime BolusDescription BranchOfService CalibrationDate
CalibrationTime CameraOwnerName CassetteID CertificateOfSigner CertifiedTimestamp
ClinicalTrialProtocolEthicsCommitteeApprovalNumber ClinicalTrialProtocolEthicsCommitteeName
ClinicalTrialProtocolID ClinicalTrialSeriesDescription ClinicalTrialSeriesID ClinicalTrialSponsorName
ClinicalTrialSubjectID ClinicalTrialSubjectReadingID ClinicalTrialTimePointDescription
CommentsOnRadiationDose CommentsOnThePerformedProcedureStep CompensatorDescription
ConfidentialityConstraintOnPatientDataDescription ConsultingPhysicianIdentificationSequence
ContainerComponentID ContainerDescription ContainerIdentifier ContentCreatorIdentificationCodeSequence
ContentSequence ContextGroupLocalVersion ContextGroupVersion ContrastBolusStartTime
ContrastBolusStopTime ContributionDateTime ContributionDescription CountryOfResidence CreationDate
CreationTime CurrentObserverTrial CurrentPatientLocation CurveDate CurveTime
CustodialOrganizationSequence DataSetTrailingPadding Date DateOfDocumentOrVerbalTransactionTrial
DateOfInstallation DateOfLastCalibration DateOfLastDetectorCalibration DateOfManufacture
DateOfSecondaryCapture DateTime DateTimeOfLastCalibration DecayCorrectionDateTime
DecompositionDescription DerivationDescription DestinationAE DetectorID DeviceDescription DeviceLabel
DeviceSerialNumber DeviceSettingDescription DigitalSignatureDateTime DigitalSignaturesSequence
DischargeDate DischargeDiagnosisDescription DischargeTime DisplacementReferenceLabel DistributionAddress
DistributionName DoseReferenceDescription EffectiveDateTime EncapsulatedDocument
EncryptedAttributesSequence EndAcquisitionDateTime EntityDescription EntityLabel EntityLongLabel
EntityName EquipmentFrameOfReferenceDescription EthicsCommitteeApprovalEffectivenessEndDate
EthicsCommitteeApprovalEffectivenessStartDate EthnicGroup ExclusionStartDateTime
ExpectedCompletionDateTime FilterLookupTableDescription FindingsGroupRecordingDateTrial
FindingsGroupRecordingTimeTrial FirstTreatmentDate FixationDeviceDescription FlowIdentifier
FlowIdentifierSequence FractionGroupDescription FrameAcquisitionDateTime FrameComments
FrameOriginTimestamp FrameReferenceDateTime FunctionalSyncPulse GPSAltitude GPSAltitudeRef
GPSAreaInformation GPSDOP GPSDateStamp GPSDestBearing GPSDestBearingRef GPSDestDistance
GPSDestDistanceRef GPSDestLatitude GPSDestLatitudeRef GPSDestLongitude GPSDestLongitudeRef
GPSDifferential GPSImgDirection GPSImgDirectionRef GPSLatitude GPSLatitudeRef GPSLongitude
GPSLongitudeRef GPSMapDatum GPSMeasureMode GPSProcessingMethod GPSSatellites GPSSpeed GPSSpeedRef
GPSStatus GPSTimeStamp GPSTrack GPSTrackRef GPSVersionID GantryID GeneratorID GraphicAnnotationSequence
HL7DocumentEffectiveTime HangingProtocolCreationDateTime HumanPerformerName HumanPerformerOrganization
IconImageSequence IdentifyingComments ImageComments ImagePresentationComments
ImagingServiceRequestComments ImpedanceMeasurementDateTime Impressions InformationIssueDateTime
InstanceCoercionDateTime InstanceCreationDate InstanceCreationTime InstanceOriginStatus
InstitutionAddress InstitutionCodeSequence InstitutionName InstitutionalDepartmentName
InstitutionalDepartmentTypeCodeSequence InsurancePlanIdentification IntendedFractionStartTime
IntendedPhaseEndDate IntendedPhaseStartDate IntendedRecipientsOfResultsIdentificationSequence
InterlockDateTime InterlockDescription InterlockOriginDescription InterpretationApprovalDate
InterpretationApprovalTime InterpretationApproverSequence InterpretationAuthor
InterpretationDiagnosisDescription InterpretationID InterpretationIDIssuer InterpretationRecordedDate
InterpretationRecordedTime InterpretationRecorder InterpretationText InterpretationTranscriber
InterpretationTranscriptionDate InterpretationTranscriptionTime InterventionDrugStartTime
InterventionDrugStopTime IssueDateOfImagingServiceRequest IssueTimeOfImagingServiceRequest
IssuerOfAdmissionID IssuerOfAdmissionIDSequence IssuerOfClinicalTrialProtocolID
IssuerOfClinicalTrialSeriesID IssuerOfClinicalTrialSiteID IssuerOfClinicalTrialSubjectID
IssuerOfClinicalTrialSubjectReadingID IssuerOfClinicalTrialTimePointID IssuerOfPatientID
IssuerOfServiceEpisodeID IssuerOfServiceEpisodeIDSequence LabelText LastMenstrualDate LensMake LensModel
LensSerialNumber LensSpecification LongDeviceDescription MAC MACParametersSequence MakerNote
MedicalAlerts MedicalRecordLocator MilitaryRank ModifiedAttributesSequence ModifiedImageDate
ModifiedImageDescription ModifiedImageTime ModifyingDeviceID ModifyingDeviceManufacturer ModifyingSystem
MostRecentTreatmentDate MultienergyAcquisitionDescription NameOfPhysiciansReadingStudy
NamesOfIntendedRecipientsOfResults NetworkID NonconformingDataElementValue
NonconformingModifiedAttributesSequence ObservationDateTime ObservationDateTrial
ObservationStartDateTime ObservationTimeTrial Occupation OperatorIdentificationSequence OperatorsName
OrderCallbackPhoneNumber OrderCallbackTelecomInformation OrderEnteredBy OrderEntererLocation
OriginalAttributesSequence Originator OtherClinicalTrialProtocolIDsSequence OtherPatientIDs
OtherPatientIDsSequence OtherPatientNames OverlayDate OverlayTime
OverrideDateTime ParticipantSequence PatientAddress PatientAge PatientBirthName PatientBirthTime
PatientComments PatientInstitutionResidence PatientInsurancePlanCodeSequence PatientMotherBirthName
PatientPrimaryLanguageCodeSequence PatientPrimaryLanguageModifierCodeSequence PatientReligiousPreference
PatientSetupPhotoDescription PatientSexNeutered PatientSize PatientState PatientTelecomInformation
PatientTelephoneNumbers PatientTransportArrangements PatientTreatmentPreparationMethodDescription
PatientTreatmentPreparationProcedureParameterDescription PatientWeight PerformedLocation
PerformedProcedureStepDescription PerformedProcedureStepEndDate PerformedProcedureStepEndDateTime
PerformedProcedureStepEndTime PerformedProcedureStepID PerformedProcedureStepStartDate
PerformedProcedureStepStartDateTime PerformedProcedureStepStartTime PerformedStationAETitle
PerformedStationGeographicLocationCodeSequence PerformedStationName PerformedStationNameCodeSequence
PerformingPhysicianIdentificationSequence PerformingPhysicianName PersonAddress
PersonIdentificationCodeSequence PersonName PersonTelecomInformation PersonTelephoneNumbers
PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
PhysiciansReadingStudyIdentificationSequence PlateID PositionAcquisitionTemplateDescription
PositionAcquisitionTemplateName PreMedication PregnancyStatus PrescriptionDescription
PresentationCreationDate PresentationCreationTime PriorTreatmentDoseDescription
ProcedureStepCancellationDateTime ProductExpirationDateTime ProtocolName PyramidDescription PyramidLabel
ROICreatorSequence ROIDateTime ROIDescription ROIGenerationDescription ROIInterpreterSequence
ROIObservationDateTime ROIObservationDescription ROIObservationLabel RTPlanDate RTPlanDescription
RTPlanLabel RTPlanName RTPlanTime RTPrescriptionLabel RTToleranceSetLabel RTTreatmentApproachLabel
RadiationDoseIdentificationLabel RadiationDoseInVivoMeasurementLabel RadiationGenerationModeLabel
RadiopharmaceuticalStartDateTime RadiopharmaceuticalStartTime RadiopharmaceuticalStopDateTime
RadiopharmaceuticalStopTime ReasonForOmissionDescription ReasonForRequestedProcedureCodeSequence
ReasonForStudy ReasonForTheAttributeModification ReasonForTheImagingServiceRequest
ReasonForTheRequestedProcedure ReasonForVisit ReasonForVisitCodeSequence ReceivingAE
RecordedRTControlPointDateTime ReferencedDateTime ReferencedDigitalSignatureSequence
ReferencedPatientAliasSequence ReferencedPatientPhotoSequence ReferencedPatientSequence
ReferencedPerformedProcedureStepSequence ReferencedSOPInstanceMACSequence ReferencedStudySequence
ReferringPhysicianAddress ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers
RegionOfResidence RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
RequestedProcedureDescription RequestedProcedureID RequestedProcedureLocation RequestedSeriesDescription
RequestingAE RequestingPhysician RequestingService RespiratoryMotionCompensationTechniqueDescription
ResponsibleOrganization ResponsiblePerson ResultsComments ResultsDistributionListSequence ResultsID
ResultsIDIssuer RetrieveAETitle ReviewerName SOPAuthorizationDateTime SafePositionExitDate
SafePositionExitTime SafePositionReturnDate SafePositionReturnTime ScheduledAdmissionDate
ScheduledAdmissionTime ScheduledDischargeDate ScheduledDischargeTime ScheduledHumanPerformersSequence
ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
ScheduledPerformingPhysicianName ScheduledProcedureStepDescription ScheduledProcedureStepEndDate
ScheduledProcedureStepEndTime ScheduledProcedureStepExpirationDateTime ScheduledProcedureStepID
ScheduledProcedureStepLocation ScheduledProcedureStepModificationDateTime
ScheduledProcedureStepStartDate ScheduledProcedureStepStartDateTime ScheduledProcedureStepStartTime
ScheduledStationAETitle ScheduledStationGeographicLocationCodeSequence ScheduledStationName
ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
ScheduledStudyStartDate ScheduledStudyStartTime ScheduledStudyStopDate ScheduledStudyStopTime
SelectorAEValue SelectorASValue SelectorDAValue SelectorDTValue SelectorLOValue SelectorLTValue
SelectorOBValue SelectorPNValue SelectorSHValue SelectorSTValue SelectorTMValue SelectorUNValue
SelectorURValue SelectorUTValue SeriesDate SeriesDescription SeriesTime ServiceEpisodeDescription
ServiceEpisodeID SetupTechniqueDescription ShieldingDeviceDescription SlideIdentifier SmokingStatus
SourceEndDateTime SourceIdentifier SourceManufacturer SourceSerialNumber SourceStartDateTime
SourceStrengthReferenceDate SourceStrengthReferenceTime SpecialNeeds SpecimenAccessionNumber
SpecimenDetailedDescription SpecimenIdentifier SpecimenShortDescription StartAcquisitionDateTime
StationAETitle StationName StructureSetDescription StructureSetLabel StructureSetName StudyArrivalDate
StudyArrivalTime StudyComments StudyCompletionDate StudyCompletionTime StudyDescription StudyIDIssuer
StudyReadDate StudyReadTime StudyVerifiedDate StudyVerifiedTime SubstanceAdministrationDateTime
TelephoneNumberTrial TemplateLocalVersion TemplateVersion TextComments TextString Time
TimeOfDocumentCreationOrVerbalTransactionTrial TimeOfLastCalibration TimeOfLastDetectorCalibration
TimeOfSecondaryCapture TimezoneOffsetFromUTC TopicAuthor TopicKeywords TopicSubject TopicTitle
TransducerIdentificationSequence TreatmentControlPointDate TreatmentControlPointTime TreatmentDate
TreatmentMachineName TreatmentPositionGroupLabel TreatmentSite TreatmentSites TreatmentTime
TreatmentToleranceViolationDateTime TreatmentToleranceViolationDescription UDISequence
UniqueDeviceIdentifier UserContentLabel UserContentLongLabel VerbalSourceIdentifierCodeSequenceTrial
VerbalSourceTrial VerificationDateTime VerifyingObserverName VerifyingObserverSequence
VerifyingOrganization VisitComments WaveformFilterDescription XRayDetectorID XRayDetectorLabel
XRaySourceID
""".split()
)
_DEID_METHOD = "PS3.15 E.1.1 Basic Profile (bimedix2)"  # LO: 64 characters at most


@dataclass(frozen=True)
class DeidReport:
    """What `deidentify` changed (attribute keywords only, never values) and burned-in-text flags.

    `burned_in_annotation` / `recognizable_visual_features`: the file's (0028,0301) and
    (0028,0302) values ('YES', 'NO') or None when absent. `pixels_need_review` is True unless the
    file states BurnedInAnnotation NO: this function does not clean text burned into pixels.
    """

    removed: tuple[str, ...]
    emptied: tuple[str, ...]
    uids_replaced: int
    private_removed: int
    burned_in_annotation: str | None
    recognizable_visual_features: str | None

    @property
    def pixels_need_review(self) -> bool:
        """True unless the file says no text is burned into its pixels."""
        return self.burned_in_annotation != "NO"

    def summary(self) -> str:
        """One line for a log or a report (keywords and counts only)."""
        flag = self.burned_in_annotation or "absent"
        review = (
            "pixel data needs review for burned-in text" if self.pixels_need_review else "no burned-in text declared"
        )
        return (
            f"removed {len(self.removed)} attribute(s), emptied {len(self.emptied)}, "
            f"replaced {self.uids_replaced} UID(s), "
            f"removed {self.private_removed} private tag(s); BurnedInAnnotation {flag}: {review}"
        )


def deidentify(dataset, *, uid_secret: bytes | None = None):  # noqa: ANN001, ANN201 - pydicom Dataset in and out
    """Apply the PS3.15 basic confidentiality profile to a copy of `dataset`; return (copy, DeidReport).

    Names, IDs, dates/times, institution and device identifiers, free-text comments and
    private tags are removed or emptied (type 2 attributes are kept empty), also inside
    sequences; instance UIDs are replaced by UIDs derived from `uid_secret` (pass the same
    secret for every file of a study to keep them linked; None uses a random one). Pixel data
    is not changed: check `report.pixels_need_review` for burned-in text.
    """
    import copy
    import os

    from pydicom.uid import UID, generate_uid

    with quiet_pydicom():
        ds = copy.deepcopy(dataset)
    secret = (uid_secret if uid_secret is not None else os.urandom(16)).hex()
    removed: set[str] = set()
    emptied: set[str] = set()
    uids: dict[str, str] = {}

    def new_uid(value: str) -> str:
        if value not in uids:
            uids[value] = str(generate_uid(entropy_srcs=[secret, value]))
        return uids[value]

    def visit(parent, elem) -> None:  # noqa: ANN001
        keyword = elem.keyword or ""
        group = elem.tag.group
        if elem.tag.is_private:
            return  # removed below by remove_private_tags
        if keyword in DEID_EMPTY:
            if elem.VR == "SQ":
                elem.value = []
            else:
                elem.value = None
            emptied.add(keyword)
        elif keyword in DEID_REMOVE or _is_curve_or_overlay_text(group, elem.tag.element):
            del parent[elem.tag]
            removed.add(keyword or str(elem.tag))
        elif elem.VR == "PN":
            elem.value = None
            emptied.add(keyword or str(elem.tag))
        elif elem.VR in ("DA", "DT", "TM"):
            del parent[elem.tag]
            removed.add(keyword or str(elem.tag))
        elif elem.VR == "UI" and elem.value:
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            fresh = [v if UID(str(v)).name != str(v) else new_uid(str(v)) for v in values]  # keep registered class UIDs
            elem.value = fresh if elem.VM > 1 else fresh[0]

    with quiet_pydicom():  # value validation warnings would quote the very values being removed
        burned_in = _flag(dataset, "BurnedInAnnotation")
        visual = _flag(dataset, "RecognizableVisualFeatures")
        private_before = _count_private(ds)
        ds.walk(visit, recursive=True)
        ds.remove_private_tags()
        if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
            old = str(ds.file_meta.MediaStorageSOPInstanceUID)
            ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or new_uid(old)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = _DEID_METHOD
        ds.DeidentificationMethodCodeSequence = [_code("113100", "Basic Application Confidentiality Profile")]
    report = DeidReport(tuple(sorted(removed)), tuple(sorted(emptied)), len(uids), private_before, burned_in, visual)
    return ds, report


def deidentify_file(source, destination, *, uid_secret: bytes | None = None, max_bytes: int = 1 << 30) -> DeidReport:  # noqa: ANN001
    """De-identify a DICOM file into `destination` (never in place); return the report."""
    from pathlib import Path

    src, dst = Path(source), Path(destination)
    if src.resolve() == dst.resolve():
        raise ImageError(f"{src}: de-identification writes a new file; give a different destination")
    ds = read_dataset(src.read_bytes(), str(src), max_bytes)
    clean, report = deidentify(ds, uid_secret=uid_secret)
    with quiet_pydicom(), atomic_writer(dst, "wb") as handle:
        clean.save_as(handle, enforce_file_format=True)
    return report


def _is_curve_or_overlay_text(group: int, element: int) -> bool:
    """Curve data (50xx,xxxx) and Overlay Data / Comments (60xx,3000 / 60xx,4000): X in the profile."""
    return 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and element in (0x3000, 0x4000))


def _flag(ds, keyword: str) -> str | None:  # noqa: ANN001
    value = ds.get(keyword)
    return str(value).strip().upper() or None if value is not None else None


def _count_private(ds) -> int:  # noqa: ANN001
    count = 0

    def visit(_parent, elem) -> None:  # noqa: ANN001
        nonlocal count
        count += elem.tag.is_private

    ds.walk(visit, recursive=True)
    return count


def _code(value: str, meaning: str):  # noqa: ANN202
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item
